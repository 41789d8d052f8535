package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func problemKeys(err error) []string {
	if err == nil {
		return nil
	}
	var keys []string
	for _, line := range strings.Split(strings.TrimPrefix(err.Error(), "invalid config:"), "\n  - ") {
		if line = strings.TrimSpace(line); line != "" {
			keys = append(keys, strings.SplitN(line, ":", 2)[0])
		}
	}
	return keys
}

// TestExampleConfig keeps config/vxlan-policy-agent.json loadable: only the
// certificate paths (BOSH's, absent here) are reported.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "config", "vxlan-policy-agent.json"))
	if diff := cmp.Diff([]string{"ca_cert_file", "client_cert_file", "client_key_file"}, problemKeys(err)); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if cfg.PollInterval != 5 || cfg.ForcePolicyPollCyclePort != 8722 || cfg.DebugServerPort != 8721 || !cfg.EnableASGSyncing ||
		cfg.longPollWait().Seconds() != DefaultLongPollWaitSeconds || cfg.backend() != BackendIPTables || cfg.forceAddr() != "127.0.0.1:8722" {
		t.Errorf("example config read as %+v", cfg)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	b, _ := json.Marshal(map[string]any{
		"poll_interval": 0, "enable_asg_syncing": true, "asg_poll_interval": 0, "policy_server_url": "ftp://x",
		"metron_address": "10.0.0.1:3457", "iptables_accepted_udp_logs_per_sec": 0, "force_policy_poll_cycle_port": 70000,
		"disable_container_network_policy": true, "overlay_network": "10.255.0.0/33", "ipv6_overlay_network": "fd00::/64", "underlay_ips": []string{"nope"},
		"deny_networks":   map[string]any{"always": []string{"1.2.3.4/40"}},
		"iptables_flavor": "ebpf", "enforcement_backend": "ebpf", "long_poll_wait_seconds": 31,
	})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	want := []string{"poll_interval", "asg_poll_interval", "cni_datastore_path", "policy_server_url", "vni", "metron_address",
		"ca_cert_file", "client_cert_file", "client_key_file", "client_timeout_seconds", "iptables_lock_file",
		"debug_server_host", "debug_server_port", "iptables_accepted_udp_logs_per_sec", "force_policy_poll_cycle_host",
		"force_policy_poll_cycle_port", "overlay_network", "ipv6_overlay_network", "underlay_ips", "deny_networks", "iptables_flavor", "enforcement_backend", "long_poll_wait_seconds"}
	if diff := cmp.Diff(want, problemKeys(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s\n%v", diff, err)
	}
}

func TestConfigUnreadable(t *testing.T) {
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Errorf("got %v", err)
	}
}

func TestEnforcementBackend(t *testing.T) {
	for in, want := range map[string]Backend{"": BackendIPTables, "iptables": BackendIPTables, "nftables": BackendNFTables} {
		if got, err := ParseBackend(in); err != nil || got != want {
			t.Errorf("ParseBackend(%q) = %q, %v", in, got, err)
		}
	}
	_, err := ParseBackend("NFTables")
	if err == nil || err.Error() != `must be "iptables" or "nftables" (got "NFTables")` {
		t.Errorf("bad value: %v", err)
	}
}
