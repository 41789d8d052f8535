package netmon

import (
	"fmt"
	"os"
	"time"

	"github.com/netman-release/netman/src/metrics"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/logging"
)

// Config is netmon's JSON config file (`-config-file`), keys as upstream's
// netmon.json.
type Config struct {
	// PollInterval is the seconds between measurements (BOSH default 30).
	PollInterval  int    `json:"poll_interval"`
	MetronAddress string `json:"metron_address"`
	// InterfaceName is the overlay device whose counters are reported
	// (BOSH default silk-vtep).
	InterfaceName    string `json:"interface_name"`
	LogLevel         string `json:"log_level"`
	LogPrefix        string `json:"log_prefix"`
	IPTablesLockFile string `json:"iptables_lock_file"`
	TelemetryEnabled bool   `json:"telemetry_enabled"`
	// TelemetryInterval is the seconds between telemetry lines; required
	// (> 0) when TelemetryEnabled.
	TelemetryInterval int `json:"telemetry_interval"`

	// IPTablesFlavor is a netman extension: "" (the host's iptables*),
	// "nft" or "legacy", as the cni-wrapper-plugin's and the agent's, so
	// netmon counts the backend the writers use.
	IPTablesFlavor string `json:"iptables_flavor,omitempty"`

	// EnforcementBackend is a netman extension: "iptables" (also "") or
	// "nftables", as the cell's vxlan-policy-agent and cni-wrapper-plugin.
	// With nftables netmon also counts netman's table (NFTablesRuleCount,
	// NFTablesSetElementCount).
	EnforcementBackend string `json:"enforcement_backend,omitempty"`
}

// The values of enforcement_backend.
const (
	BackendIPTables = "iptables"
	BackendNFTables = "nftables"
)

// NFTables reports whether the cell runs the nftables backend.
func (c Config) NFTables() bool { return c.EnforcementBackend == BackendNFTables }

// LoadConfig reads and validates a config file. An invalid file names every
// problem in one error; a missing one keeps upstream's wording ("file does
// not exist: stat …").
func LoadConfig(path string) (Config, error) {
	if _, err := os.Stat(path); err != nil {
		return Config{}, fmt.Errorf("file does not exist: %w", err)
	}
	return configfile.Load(path, Config{})
}

// Validate checks every key and returns one error listing all problems.
// The rules are upstream's (its validator tags), with log_level checked
// here rather than at start-up.
func (c Config) Validate() error {
	var p configfile.Problems
	p.Min("poll_interval", c.PollInterval, 1)
	configfile.Parse(&p, "metron_address", c.MetronAddress, metrics.MetronPort)
	p.RequiredString("interface_name", c.InterfaceName)
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	p.RequiredString("log_prefix", c.LogPrefix)
	p.RequiredString("iptables_lock_file", c.IPTablesLockFile)
	if c.TelemetryEnabled && c.TelemetryInterval <= 0 {
		p.Addf("telemetry_interval: must be set to a positive, non-zero value if telemetry_enabled is true (got %d)", c.TelemetryInterval)
	}
	if _, err := iptables.ParseFlavor(c.IPTablesFlavor); err != nil {
		p.Addf("iptables_flavor: %v", err)
	}
	switch c.EnforcementBackend {
	case "", BackendIPTables, BackendNFTables:
	default:
		p.Addf("enforcement_backend: must be %q or %q (got %q)", BackendIPTables, BackendNFTables, c.EnforcementBackend)
	}
	return p.Err()
}

// MetronPort is the port of metron_address, which must be on loopback.
func (c Config) MetronPort() (int, error) { return metrics.MetronPort(c.MetronAddress) }

func (c Config) pollInterval() time.Duration { return time.Duration(c.PollInterval) * time.Second }

func (c Config) telemetryInterval() time.Duration {
	return time.Duration(c.TelemetryInterval) * time.Second
}
