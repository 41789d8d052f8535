package iptableslogger

import (
	"fmt"
	"net/netip"

	"github.com/netman-release/netman/src/metrics"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/logging"
)

// Config is iptables-logger's JSON config file (`-config-file`), keys as
// upstream's iptables-logger.json.
type Config struct {
	KernelLogFile         string `json:"kernel_log_file"`
	ContainerMetadataFile string `json:"container_metadata_file"`
	OutputLogFile         string `json:"output_log_file"`
	MetronAddress         string `json:"metron_address"`
	HostIP                string `json:"host_ip"`
	HostGUID              string `json:"host_guid"`
	// LogTimestampFormat is "rfc3339" or "deprecated"; empty means
	// "deprecated", as upstream's binary (its BOSH job renders "rfc3339").
	LogTimestampFormat string `json:"log_timestamp_format"`
	// LogPrefix and LogLevel shape the process's own log (not the output
	// file). Upstream hard-codes "cfnetworking" and logs at debug.
	LogPrefix string `json:"log_prefix"`
	LogLevel  string `json:"log_level"`
	// EnableFlowLogs turns on flow records (netman): one line per
	// connection conntrack ended and per denied packet, with both ends'
	// apps, bytes and packets each way and the duration.
	EnableFlowLogs bool `json:"enable_flow_logs"`
	// FlowLogsPerSec and FlowLogsBurst are the flow records' token bucket:
	// at most FlowLogsPerSec a second on average, FlowLogsBurst at once
	// (0: FlowLogsPerSec). Records over the limit are dropped and counted.
	FlowLogsPerSec int `json:"flow_logs_per_sec"`
	FlowLogsBurst  int `json:"flow_logs_burst"`
}

// Timestamp formats of log_timestamp_format.
const (
	FormatRFC3339    = "rfc3339"
	FormatDeprecated = "deprecated"
)

// LoadConfig reads and validates a config file. An invalid file names every
// problem in one error.
func LoadConfig(path string) (Config, error) {
	if path == "" {
		return Config{}, fmt.Errorf("no -config-file given")
	}
	return configfile.Load(path, Config{})
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.RequiredString("kernel_log_file", c.KernelLogFile)
	p.RequiredString("container_metadata_file", c.ContainerMetadataFile)
	p.RequiredString("output_log_file", c.OutputLogFile)
	configfile.Parse(&p, "metron_address", c.MetronAddress, metrics.MetronPort)
	if c.HostIP == "" {
		p.Required("host_ip", false)
	} else if _, err := netip.ParseAddr(c.HostIP); err != nil {
		p.Addf("host_ip: invalid IP address %q", c.HostIP)
	}
	p.RequiredString("host_guid", c.HostGUID)
	if _, err := c.Format(); err != nil {
		p.Addf("log_timestamp_format: %v", err)
	}
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	if c.EnableFlowLogs && c.FlowLogsPerSec <= 0 {
		p.Addf("flow_logs_per_sec: must be positive with enable_flow_logs (got %d)", c.FlowLogsPerSec)
	}
	if c.FlowLogsPerSec < 0 {
		p.Addf("flow_logs_per_sec: must not be negative (got %d)", c.FlowLogsPerSec)
	}
	if c.FlowLogsBurst < 0 {
		p.Addf("flow_logs_burst: must not be negative (got %d)", c.FlowLogsBurst)
	}
	return p.Err()
}

// Format is log_timestamp_format as a TimestampFormat.
func (c Config) Format() (TimestampFormat, error) {
	switch c.LogTimestampFormat {
	case "", FormatDeprecated:
		return TimestampDeprecated, nil
	case FormatRFC3339:
		return TimestampRFC3339, nil
	}
	return 0, fmt.Errorf("want %q or %q (got %q)", FormatRFC3339, FormatDeprecated, c.LogTimestampFormat)
}

// FlowBurst is flow_logs_burst, or flow_logs_per_sec when that is 0.
func (c Config) FlowBurst() int {
	if c.FlowLogsBurst > 0 {
		return c.FlowLogsBurst
	}
	return c.FlowLogsPerSec
}

// MetronPort is the port of metron_address, which must be on loopback.
func (c Config) MetronPort() (int, error) { return metrics.MetronPort(c.MetronAddress) }
