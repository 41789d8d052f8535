package iptableslogger

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/iptables-logger.json loadable.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "config", "iptables-logger.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		KernelLogFile:         "/var/log/kern.log",
		ContainerMetadataFile: "/var/vcap/data/container-metadata/store.json",
		OutputLogFile:         "/var/vcap/sys/log/iptables-logger/iptables.log",
		MetronAddress:         "127.0.0.1:3457",
		HostIP:                "10.0.16.5",
		HostGUID:              "6e7d4a3b-1c2f-4e5a-9b8c-0d1e2f3a4b5c",
		LogTimestampFormat:    "rfc3339",
		LogPrefix:             "cfnetworking",
		LogLevel:              "info",
		FlowLogsPerSec:        1000,
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}
	if f, _ := cfg.Format(); f != TimestampRFC3339 {
		t.Errorf("format = %v", f)
	}
	if port, err := cfg.MetronPort(); port != 3457 || err != nil {
		t.Errorf("metron port = %d, %v", port, err)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	_, err := LoadConfig(configtest.Write(t, "iptables-logger.json", map[string]any{
		"metron_address":       "10.0.0.1:3457",
		"host_ip":              "10.0.0.300",
		"log_timestamp_format": "unix",
		"log_level":            "loud",
		"unknown_key":          "ignored, as upstream",
	}))
	var cerr *configfile.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	want := []string{
		"kernel_log_file: missing required value",
		"container_metadata_file: missing required value",
		"output_log_file: missing required value",
		"metron_address: address 10.0.0.1:3457: metron agent must be on loopback",
		`host_ip: invalid IP address "10.0.0.300"`,
		"host_guid: missing required value",
		`log_timestamp_format: want "rfc3339" or "deprecated" (got "unix")`,
		`log_level: unknown log level "loud": want debug, info, error or fatal (or 0-3)`,
	}
	if diff := cmp.Diff(want, cerr.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestConfigValues(t *testing.T) {
	base := Config{
		KernelLogFile: "/dev/kmsg", ContainerMetadataFile: "s", OutputLogFile: "o",
		MetronAddress: "127.0.0.1:3457", HostIP: "10.0.0.1", HostGUID: "g",
	}
	for _, tc := range []struct {
		name    string
		change  func(*Config)
		format  TimestampFormat
		problem string
	}{
		{name: "empty format is upstream's deprecated", change: func(*Config) {}, format: TimestampDeprecated},
		{name: "deprecated", change: func(c *Config) { c.LogTimestampFormat = "deprecated" }, format: TimestampDeprecated},
		{name: "rfc3339", change: func(c *Config) { c.LogTimestampFormat = "rfc3339" }, format: TimestampRFC3339},
		{name: "IPv6 host", change: func(c *Config) { c.HostIP = "fd00::1" }},
		{name: "localhost metron", change: func(c *Config) { c.MetronAddress = "localhost:3457" }},
		{name: "metron without port", change: func(c *Config) { c.MetronAddress = "127.0.0.1" }, problem: "metron_address: address 127.0.0.1: missing port in address"},
		{name: "metron bad port", change: func(c *Config) { c.MetronAddress = "127.0.0.1:0" }, problem: "metron_address: address 127.0.0.1:0: invalid port"},
		{name: "blank guid", change: func(c *Config) { c.HostGUID = " " }, problem: "host_guid: missing required value"},
		{name: "flow logs", change: func(c *Config) { c.EnableFlowLogs, c.FlowLogsPerSec = true, 10 }},
		{name: "flow logs without a rate", change: func(c *Config) { c.EnableFlowLogs = true }, problem: "flow_logs_per_sec: must be positive with enable_flow_logs (got 0)"},
		{name: "negative flow burst", change: func(c *Config) { c.FlowLogsBurst = -1 }, problem: "flow_logs_burst: must not be negative (got -1)"},
		{name: "negative flow rate", change: func(c *Config) { c.FlowLogsPerSec = -1 }, problem: "flow_logs_per_sec: must not be negative (got -1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base
			tc.change(&c)
			err := c.Validate()
			if tc.problem == "" {
				if err != nil {
					t.Fatal(err)
				}
				if f, _ := c.Format(); f != tc.format {
					t.Errorf("format = %v, want %v", f, tc.format)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.problem) {
				t.Errorf("err = %v, want %q", err, tc.problem)
			}
		})
	}
}

func TestLoadConfigErrors(t *testing.T) {
	if _, err := LoadConfig(""); err == nil || !strings.Contains(err.Error(), "no -config-file") {
		t.Errorf("no path: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "parsing config") {
		t.Errorf("bad JSON: %v", err)
	}
}
