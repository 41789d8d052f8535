package internalapi_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/policy-server-internal.json loadable: only
// the certificate paths (BOSH's, absent here) are expected to be reported.
func TestExampleConfig(t *testing.T) {
	c, err := internalapi.LoadConfig(filepath.Join("..", "..", "..", "config", "policy-server-internal.json"))
	problems := configtest.ProblemKeys(err)
	want := []string{"ca_cert_file", "server_cert_file", "server_key_file"}
	if diff := cmp.Diff(want, problems); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if c.InternalListenPort != 4003 || c.HealthCheckPort != 31946 || c.DebugServerPort != 31945 || c.TagLength != 2 || c.MaxOpenConnections != 200 {
		t.Errorf("example config does not carry upstream's defaults: %+v", c)
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
		"internal_listen_port": 70000,
		"ca_cert_file":         filepath.Join(dir, "missing.crt"),
		"database":             map[string]any{"type": "oracle", "timeout": 5, "database_name": "x"},
		"tag_length":           4,
		"metron_address":       "10.0.0.1:3457",
		"log_level":            "warn",
		"max_open_connections": -1,
	})
	_, err := internalapi.LoadConfig(path)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"log_prefix: missing required value",
		"listen_host: missing required value",
		"internal_listen_port: must be a port between 1 and 65535 (got 70000)",
		"debug_server_host: missing required value",
		"debug_server_port: must be a port",
		"health_check_port: must be a port",
		"ca_cert_file: unreadable file",
		"server_cert_file: missing required value",
		"server_key_file: missing required value",
		"database.type: database type oracle is not supported",
		"tag_length: must be between 1 and 3 (got 4)",
		"metron_address: address 10.0.0.1:3457: metron agent must be on loopback",
		`log_level: unknown log level "warn"`,
		"max_open_connections: must be at least 0",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}

	write(map[string]any{"metron_address": "nope"})
	if _, err := internalapi.LoadConfig(path); err == nil || !strings.Contains(err.Error(), "metron_address: address nope: missing port in address") ||
		!strings.Contains(err.Error(), "tag_length: missing required value") || !strings.Contains(err.Error(), "database.type: missing required value") {
		t.Errorf("second config: %v", err)
	}
	if _, err := internalapi.LoadConfig(filepath.Join(dir, "nope.json")); err == nil || !strings.HasPrefix(err.Error(), "reading config") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := internalapi.LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), "parsing config") {
		t.Errorf("malformed file: %v", err)
	}
}
