package external

// policy-server's config file: upstream's keys (policy-server job, spec
// §9.1), loading with defaults for the keys upstream's template hard-codes,
// and validation that names every problem.

import (
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policyserver/auth"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/sqldb"
)

// Config is policy-server's JSON config file, keys as upstream.
type Config struct {
	ListenHost      string `json:"listen_host"`
	ListenPort      int    `json:"listen_port"`
	LogPrefix       string `json:"log_prefix"`
	LogLevel        string `json:"log_level"`
	EnableTLS       bool   `json:"enable_tls"`
	ServerCertFile  string `json:"server_cert_file"`
	ServerKeyFile   string `json:"server_key_file"`
	DebugServerHost string `json:"debug_server_host"`
	DebugServerPort int    `json:"debug_server_port"`

	auth.ClientConfig

	Database                 sqldb.Config `json:"database"`
	DatabaseMigrationTimeout int          `json:"database_migration_timeout"`
	TagLength                int          `json:"tag_length"`
	MetronAddress            string       `json:"metron_address"`

	CleanupInterval                 int      `json:"cleanup_interval"`
	CCAppRequestChunkSize           int      `json:"cc_app_request_chunk_size"` // parsed and unused, as upstream
	MaxPolicies                     int      `json:"max_policies"`
	EnableSpaceDeveloperSelfService bool     `json:"enable_space_developer_self_service"`
	AllowedCORSDomains              []string `json:"allowed_cors_domains"`

	// AuthTokensFile (netman extension, off when empty) replaces UAA and
	// Cloud Controller with a JSON file of bearer tokens; see
	// auth.FileAuth. The uaa_* and cc_* keys are then not required.
	AuthTokensFile string `json:"auth_tokens_file"`

	// UICells (netman, optional) are the cells' vxlan-policy-agent debug
	// servers (host:port or URL) the debug server's /ui/ page reads: the
	// app instances, what each cell enforces, traces past the policy, and
	// each app's recent flows from the cells' flow logs. Empty: the page
	// shows the policies only.
	UICells []string `json:"ui_cells"`

	// CACertFile is rendered by upstream's template and ignored, as
	// upstream ignores it.
	CACertFile string `json:"ca_cert_file"`

	sqldb.Pool
}

// Defaults for keys upstream's template hard-codes; a file that omits them
// still works.
const (
	DefaultLogPrefix                = "cfnetworking"
	DefaultDatabaseMigrationTimeout = 600
	DefaultRequestTimeout           = 5
)

// MaxTagLength is the widest tag the store can pre-allocate (bytes).
const MaxTagLength = 3

// Load reads and validates a config file, naming every problem. Errors
// read "reading config: ...", "parsing config ...: ..." or
// "invalid config: ...".
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{
		LogPrefix:                DefaultLogPrefix,
		DatabaseMigrationTimeout: DefaultDatabaseMigrationTimeout,
		ClientConfig:             auth.ClientConfig{RequestTimeout: DefaultRequestTimeout},
	})
}

// FileAuth reports whether the opt-in tokens file replaces UAA and CC.
func (c Config) FileAuth() bool { return c.AuthTokensFile != "" }

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.RequiredString("listen_host", c.ListenHost)
	p.Port("listen_port", c.ListenPort)
	p.RequiredString("log_prefix", c.LogPrefix)
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	if c.EnableTLS {
		p.ReadableFile("server_cert_file", c.ServerCertFile)
		p.ReadableFile("server_key_file", c.ServerKeyFile)
	}
	p.RequiredString("debug_server_host", c.DebugServerHost)
	p.Port("debug_server_port", c.DebugServerPort)
	for i, cell := range c.UICells {
		if strings.TrimSpace(cell) == "" {
			p.Addf("ui_cells[%d]: empty", i)
		}
	}

	if c.FileAuth() {
		p.ReadableFile("auth_tokens_file", c.AuthTokensFile)
	} else {
		c.ClientConfig.Check(&p)
	}
	p.Min("request_timeout", c.RequestTimeout, 1)

	p.Merge("database.", c.Database.Validate())
	p.Min("database_migration_timeout", c.DatabaseMigrationTimeout, 1)
	p.Range("tag_length", c.TagLength, 1, MaxTagLength)
	configfile.Parse(&p, "metron_address", c.MetronAddress, metrics.MetronPort)
	p.Min("cleanup_interval", c.CleanupInterval, 1)
	p.Min("max_policies", c.MaxPolicies, 1)
	for i, d := range c.AllowedCORSDomains {
		if d == "" {
			p.Addf("allowed_cors_domains[%d]: empty domain", i)
		}
	}
	p.Merge("", c.Pool.Validate())
	return p.Err()
}

// ListenAddress is listen_host:listen_port.
func (c Config) ListenAddress() string {
	return net.JoinHostPort(c.ListenHost, strconv.Itoa(c.ListenPort))
}

// DebugAddress is debug_server_host:debug_server_port.
func (c Config) DebugAddress() string {
	return net.JoinHostPort(c.DebugServerHost, strconv.Itoa(c.DebugServerPort))
}

// CleanupEvery is cleanup_interval as a duration.
func (c Config) CleanupEvery() time.Duration { return time.Duration(c.CleanupInterval) * time.Second }

// MigrationTimeout is database_migration_timeout as a duration.
func (c Config) MigrationTimeout() time.Duration {
	return time.Duration(c.DatabaseMigrationTimeout) * time.Second
}

// MetronPort is the port of metron_address, which must be on loopback.
func (c Config) MetronPort() (int, error) { return metrics.MetronPort(c.MetronAddress) }
