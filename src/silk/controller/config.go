package controller

import (
	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
)

// Config is silk-controller's JSON config file, keys as upstream.
type Config struct {
	DebugServerPort           int          `json:"debug_server_port"`
	ListenHost                string       `json:"listen_host"`
	ListenPort                int          `json:"listen_port"`
	CACertFile                string       `json:"ca_cert_file"`
	ServerCertFile            string       `json:"server_cert_file"`
	ServerKeyFile             string       `json:"server_key_file"`
	Network                   string       `json:"network"`
	SubnetPrefixLength        int          `json:"subnet_prefix_length"`
	Database                  sqldb.Config `json:"database"`
	LeaseExpirationSeconds    int          `json:"lease_expiration_seconds"`
	MetronPort                int          `json:"metron_port"`
	HealthCheckPort           int          `json:"health_check_port"`
	MetricsEmitSeconds        int          `json:"metrics_emit_seconds"`
	StalenessThresholdSeconds int          `json:"staleness_threshold_seconds"`
	LogPrefix                 string       `json:"log_prefix"`
	LogLevel                  string       `json:"log_level"`
	sqldb.Pool
}

// Defaults for the keys upstream's template hard-codes; a file that omits
// them still works.
const (
	DefaultMetricsEmitSeconds        = 30
	DefaultStalenessThresholdSeconds = 3600
	DefaultLogPrefix                 = "cfnetworking"
)

// LoadConfig reads and validates a config file, naming every problem.
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{
		MetricsEmitSeconds:        DefaultMetricsEmitSeconds,
		StalenessThresholdSeconds: DefaultStalenessThresholdSeconds,
		LogPrefix:                 DefaultLogPrefix,
	})
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.Port("debug_server_port", c.DebugServerPort)
	p.RequiredString("listen_host", c.ListenHost)
	p.Port("listen_port", c.ListenPort)
	p.ReadableFile("ca_cert_file", c.CACertFile)
	p.ReadableFile("server_cert_file", c.ServerCertFile)
	p.ReadableFile("server_key_file", c.ServerKeyFile)
	if _, ok := p.CIDR("network", c.Network); ok {
		if _, err := lease.NewPool(c.Network, c.SubnetPrefixLength); err != nil {
			p.Addf("network/subnet_prefix_length: %v", err)
		}
	} else {
		p.Required("subnet_prefix_length", c.SubnetPrefixLength != 0)
	}
	p.Merge("database.", c.Database.Validate())
	p.Min("lease_expiration_seconds", c.LeaseExpirationSeconds, 1)
	p.Port("metron_port", c.MetronPort)
	p.Port("health_check_port", c.HealthCheckPort)
	p.Min("metrics_emit_seconds", c.MetricsEmitSeconds, 1)
	p.Min("staleness_threshold_seconds", c.StalenessThresholdSeconds, 1)
	p.RequiredString("log_prefix", c.LogPrefix)
	p.Merge("", c.Pool.Validate())
	return p.Err()
}
