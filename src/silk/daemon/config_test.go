package daemon

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/silk-daemon.json loadable: only the
// certificate paths (BOSH's, absent here) are expected to be reported.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadConfig(filepath.Join("..", "..", "..", "config", "silk-daemon.json"))
	want := []string{"ca_cert_file", "client_cert_file", "client_key_file"}
	if diff := cmp.Diff(want, configtest.ProblemKeys(err)); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if cfg.Overlay().String() != "10.255.0.0/16" || cfg.VTEPName != "silk-vtep" || cfg.HealthCheckPort != 23954 {
		t.Errorf("example config read as %+v", cfg)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	path := configtest.Write(t, "c.json", map[string]any{
		"underlay_ip":             "10.0.0.300",
		"vxlan_interface_name":    "a-very-long-interface-name",
		"subnet_prefix_length":    16,
		"overlay_network":         "10.255.0.0/16",
		"health_check_port":       70000,
		"vtep_name":               "",
		"connectivity_server_url": "silk-controller:4103",
		"ca_cert_file":            "/nonexistent/ca.crt",
		"vni":                     1 << 24,
		"vtep_port":               0,
		"poll_interval":           0,
		"debug_server_port":       0,
		"datastore":               "",
		"client_timeout_seconds":  -1,
		"metron_port":             0,
		"log_level":               "loud",
		"mtu":                     10,
	})
	_, err := LoadConfig(path)
	want := []string{
		"underlay_ip", "vxlan_interface_name", "overlay_network/subnet_prefix_length", "health_check_port",
		"vtep_name", "connectivity_server_url", "ca_cert_file", "client_cert_file", "client_key_file", "vni",
		"vtep_port", "poll_interval", "debug_server_port", "datastore", "partition_tolerance_seconds",
		"client_timeout_seconds", "metron_port", "log_level", "mtu",
	}
	if diff := cmp.Diff(want, configtest.ProblemKeys(err)); diff != "" {
		t.Errorf("problems (-want +got):\n%s\nerror: %v", diff, err)
	}
}

func TestConfigReadErrorsKeepUpstreamWording(t *testing.T) {
	if _, err := LoadConfig("/some/bad/path"); err == nil || !strings.HasPrefix(err.Error(), "reading file /some/bad/path") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte("some-bad-contents"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), "unmarshaling contents") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestOverlayNetworkAcceptsBothUpstreamShapes(t *testing.T) {
	tests := []struct {
		json    string
		want    string
		problem string
	}{
		{json: `"10.255.0.0/16"`, want: "10.255.0.0/16"},
		{json: `["10.255.0.0/16"]`, want: "10.255.0.0/16"},
		{json: `"10.255.7.1/16"`, want: "10.255.0.0/16"}, // host bits ignored, as upstream
		{json: `["10.255.0.0/16", "10.254.0.0/16"]`, problem: "exactly one overlay network"},
		{json: `[]`, problem: "overlay_network: missing required value"},
		{json: `"10.255.0.0"`, problem: `overlay_network: invalid IPv4 CIDR`},
	}
	for _, tt := range tests {
		t.Run(tt.json, func(t *testing.T) {
			var c Config
			if err := json.Unmarshal([]byte(`{"overlay_network": `+tt.json+`}`), &c); err != nil {
				t.Fatal(err)
			}
			err := c.Validate()
			if tt.problem != "" {
				if err == nil || !strings.Contains(err.Error(), tt.problem) {
					t.Errorf("problems %v lack %q", err, tt.problem)
				}
				return
			}
			if got := c.Overlay().String(); got != tt.want {
				t.Errorf("Overlay() = %s, want %s", got, tt.want)
			}
			if err != nil && strings.Contains(err.Error(), "overlay_network") {
				t.Errorf("unexpected overlay problem: %v", err)
			}
		})
	}
	if b, _ := json.Marshal(OverlayNetwork{"10.255.0.0/16"}); string(b) != `"10.255.0.0/16"` {
		t.Errorf("marshal = %s", b)
	}
}

func TestConfigDefaultsLogPrefix(t *testing.T) {
	cfg, _ := LoadConfig(configtest.Write(t, "c.json", map[string]any{}))
	if cfg.LogPrefix != "cfnetworking" {
		t.Errorf("log_prefix defaulted to %q", cfg.LogPrefix)
	}
}
