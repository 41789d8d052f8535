package adapter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/bosh-dns-adapter.json (what upstream's job
// template renders with cf-deployment's values) loadable: only the
// certificate paths, BOSH's and absent here, are reported.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "..", "..", "config", "bosh-dns-adapter.json"))
	if diff := cmp.Diff([]string{"client_cert", "client_key", "ca_cert"}, configtest.ProblemKeys(err)); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if c.Port != "8053" || c.LogLevelPort != 8066 || c.readHeaderTimeout() != 5*time.Second {
		t.Errorf("example config read as %+v", c)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{
		"port": "-1", "service_discovery_controller_port": "0", "client_key": "/nonexistent/client.key",
		"metron_port": -2, "metrics_emit_seconds": -2, "log_level_port": -2, "internal_route_vip_range": "321.12.12.0/8"
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"address: missing required value",
		"service_discovery_controller_address: missing required value",
		"service_discovery_controller_port: must be a port between 1 and 65535 (got 0)",
		"client_cert: missing required value",
		"client_key: unreadable file /nonexistent/client.key",
		"ca_cert: missing required value",
		"metron_port: must be at least 1 (got -2)",
		"metrics_emit_seconds: must be at least 1 (got -2)",
		"log_level_address: missing required value",
		"log_level_port: must be a port between 1 and 65535 (got -2)",
		"internal_route_vip_range: invalid CIDR address: 321.12.12.0/8",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	// A bad DNS port fails at start-up (exit 1), as upstream's listen did.
	if strings.Contains(err.Error(), "\n  - port:") {
		t.Errorf("port reported as a config problem:\n%s", err)
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"read_header_timeout": "2s", "internal_route_vip_range": ""}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := LoadConfig(path)
	if !strings.Contains(err.Error(), "internal_route_vip_range: missing required value") {
		t.Errorf("empty VIP range not reported: %v", err)
	}
	if c.readHeaderTimeout() != 2*time.Second {
		t.Errorf("read header timeout = %v", c.readHeaderTimeout())
	}
}
