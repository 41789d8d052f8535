package netmon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/netmon.json loadable.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "config", "netmon.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		PollInterval:       30,
		MetronAddress:      "127.0.0.1:3457",
		InterfaceName:      "silk-vtep",
		LogLevel:           "info",
		LogPrefix:          "cfnetworking",
		IPTablesLockFile:   "/var/vcap/data/garden-cni/iptables.lock",
		TelemetryInterval:  600,
		EnforcementBackend: BackendIPTables,
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}
	if port, err := cfg.MetronPort(); port != 3457 || err != nil {
		t.Errorf("metron port = %d, %v", port, err)
	}
	if cfg.pollInterval() != 30*time.Second || cfg.telemetryInterval() != 10*time.Minute {
		t.Errorf("intervals = %s, %s", cfg.pollInterval(), cfg.telemetryInterval())
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	_, err := LoadConfig(configtest.Write(t, "netmon.json", map[string]any{
		"poll_interval":       0,
		"metron_address":      "10.0.0.1:3457",
		"log_level":           "loud",
		"telemetry_enabled":   true,
		"telemetry_interval":  0,
		"iptables_flavor":     "ebpf",
		"enforcement_backend": "ebpf",
	}))
	var cerr *configfile.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("err = %v, want *config.Error", err)
	}
	want := []string{
		"poll_interval: must be at least 1 (got 0)",
		"metron_address: address 10.0.0.1:3457: metron agent must be on loopback",
		"interface_name: missing required value",
		`log_level: unknown log level "loud": want debug, info, error or fatal (or 0-3)`,
		"log_prefix: missing required value",
		"iptables_lock_file: missing required value",
		"telemetry_interval: must be set to a positive, non-zero value if telemetry_enabled is true (got 0)",
		`iptables_flavor: iptables: unknown flavor "ebpf" (want nft or legacy)`,
		`enforcement_backend: must be "iptables" or "nftables" (got "ebpf")`,
	}
	if diff := cmp.Diff(want, cerr.Problems); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestConfigValid(t *testing.T) {
	base := func() map[string]any {
		return map[string]any{
			"poll_interval": 1, "metron_address": "127.0.0.1:3457", "interface_name": "silk-vtep",
			"log_prefix": "cfnetworking", "iptables_lock_file": "/tmp/lock",
		}
	}
	for name, edit := range map[string]func(map[string]any){
		"minimal":                             func(map[string]any) {},
		"empty log_level means info":          func(m map[string]any) { m["log_level"] = "" },
		"telemetry with interval":             func(m map[string]any) { m["telemetry_enabled"] = true; m["telemetry_interval"] = 1 },
		"telemetry interval ignored when off": func(m map[string]any) { m["telemetry_interval"] = -5 },
		"localhost metron":                    func(m map[string]any) { m["metron_address"] = "localhost:3457" },
		"legacy flavor":                       func(m map[string]any) { m["iptables_flavor"] = "legacy" },
		"iptables backend":                    func(m map[string]any) { m["enforcement_backend"] = "iptables" },
		"nftables backend":                    func(m map[string]any) { m["enforcement_backend"] = "nftables" },
		"unknown keys ignored":                func(m map[string]any) { m["some_future_key"] = true },
	} {
		t.Run(name, func(t *testing.T) {
			m := base()
			edit(m)
			if _, err := LoadConfig(configtest.Write(t, "netmon.json", m)); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	_, err := LoadConfig("/some/bad/path")
	if err == nil || err.Error() != "file does not exist: stat /some/bad/path: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(path, []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), "parsing config ") {
		t.Errorf("bad JSON: %v", err)
	}
}
