package controller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/silk-controller.json loadable: only the
// certificate paths (BOSH's, absent here) are expected to be reported.
func TestExampleConfig(t *testing.T) {
	_, err := LoadConfig(filepath.Join("..", "..", "..", "config", "silk-controller.json"))
	problems := configtest.ProblemKeys(err)
	want := []string{"ca_cert_file", "server_cert_file", "server_key_file"}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	write := func(v map[string]any) {
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(map[string]any{
		"listen_port":          70000,
		"ca_cert_file":         filepath.Join(dir, "missing.crt"),
		"network":              "10.255.0.0/33",
		"subnet_prefix_length": 24,
		"database":             map[string]any{"type": "oracle", "timeout": 5, "database_name": "x"},
		"max_open_connections": -1,
	})
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"debug_server_port: must be a port",
		"listen_host: missing required value",
		"listen_port: must be a port between 1 and 65535 (got 70000)",
		"ca_cert_file: unreadable file",
		"server_cert_file: missing required value",
		`network: invalid IPv4 CIDR "10.255.0.0/33"`,
		"database.type: database type oracle is not supported",
		"lease_expiration_seconds: must be at least 1",
		"metron_port: must be a port",
		"health_check_port: must be a port",
		"max_open_connections: must be at least 0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}

	write(map[string]any{"network": "10.255.0.0/16", "subnet_prefix_length": 8})
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "must be longer than the network prefix /16") {
		t.Errorf("prefix check: %v", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "nope.json")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "parsing config") {
		t.Errorf("malformed file: %v", err)
	}
}
