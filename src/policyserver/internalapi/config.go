package internalapi

import (
	"github.com/netman-release/netman/src/metrics"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/sqldb"
)

// Config is policy-server-internal's JSON config file, keys as upstream.
type Config struct {
	LogPrefix          string       `json:"log_prefix"`
	ListenHost         string       `json:"listen_host"`
	InternalListenPort int          `json:"internal_listen_port"`
	DebugServerHost    string       `json:"debug_server_host"`
	DebugServerPort    int          `json:"debug_server_port"`
	HealthCheckPort    int          `json:"health_check_port"`
	CACertFile         string       `json:"ca_cert_file"`
	ServerCertFile     string       `json:"server_cert_file"`
	ServerKeyFile      string       `json:"server_key_file"`
	Database           sqldb.Config `json:"database"`
	TagLength          int          `json:"tag_length"`
	MetronAddress      string       `json:"metron_address"`
	LogLevel           string       `json:"log_level"`
	// RequestTimeout is rendered by upstream's template and ignored, as
	// upstream ignores it.
	RequestTimeout int `json:"request_timeout"`
	sqldb.Pool
}

// MaxTagLength is the widest tag (in bytes) the tag pool supports, as
// upstream's job template.
const MaxTagLength = 3

// LoadConfig reads and validates a config file, naming every problem.
// Errors read "reading config: ...", "parsing config ...: ..." or
// "invalid config: ...", as upstream's.
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{})
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.RequiredString("log_prefix", c.LogPrefix)
	p.RequiredString("listen_host", c.ListenHost)
	p.Port("internal_listen_port", c.InternalListenPort)
	p.RequiredString("debug_server_host", c.DebugServerHost)
	p.Port("debug_server_port", c.DebugServerPort)
	p.Port("health_check_port", c.HealthCheckPort)
	p.ReadableFile("ca_cert_file", c.CACertFile)
	p.ReadableFile("server_cert_file", c.ServerCertFile)
	p.ReadableFile("server_key_file", c.ServerKeyFile)
	p.Merge("database.", c.Database.Validate())
	p.Range("tag_length", c.TagLength, 1, MaxTagLength)
	configfile.Parse(&p, "metron_address", c.MetronAddress, metrics.MetronPort)
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	p.Merge("", c.Pool.Validate())
	return p.Err()
}

// MetronPort is the port of metron_address, which must be on loopback.
func (c Config) MetronPort() (int, error) { return metrics.MetronPort(c.MetronAddress) }
