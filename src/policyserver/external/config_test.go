package external_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/policy-server.json loadable: only the CA
// paths (BOSH's, absent here) are expected to be reported.
func TestExampleConfig(t *testing.T) {
	c, err := external.LoadConfig(filepath.Join("..", "..", "..", "config", "policy-server.json"))
	problems := configtest.ProblemKeys(err)
	if diff := cmp.Diff([]string{"uaa_ca", "cc_ca_cert"}, problems); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if c.UAABaseURL() != "https://uaa.service.cf.internal:8443" || c.ListenAddress() != "0.0.0.0:4002" ||
		c.DebugAddress() != "127.0.0.1:31821" || c.CleanupEvery() != time.Hour || c.Timeout() != 5*time.Second ||
		c.MaxPolicies != 150 || c.TagLength != 2 || c.FileAuth() {
		t.Errorf("example config read as %+v", c)
	}
	if p, err := c.MetronPort(); p != 3457 || err != nil {
		t.Errorf("MetronPort = %d, %v", p, err)
	}
}

func write(t *testing.T, v map[string]any) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.json")
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigNamesEveryProblem(t *testing.T) {
	dir := t.TempDir()
	_, err := external.LoadConfig(write(t, map[string]any{
		"listen_port":                70000,
		"log_prefix":                 "",
		"log_level":                  "warn",
		"enable_tls":                 true,
		"server_cert_file":           filepath.Join(dir, "missing.crt"),
		"uaa_url":                    "uaa.example.com",
		"cc_url":                     "ftp://cc",
		"database":                   map[string]any{"type": "oracle", "timeout": 5, "database_name": "x"},
		"database_migration_timeout": 0,
		"tag_length":                 5,
		"metron_address":             "10.0.0.1:3457",
		"cleanup_interval":           0,
		"max_policies":               0,
		"request_timeout":            0,
		"allowed_cors_domains":       []string{""},
		"max_open_connections":       -1,
		"ui_cells":                   []string{"10.0.16.5:8721", " "},
	}))
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"listen_host: missing required value",
		"listen_port: must be a port between 1 and 65535 (got 70000)",
		"log_prefix: missing required value",
		`log_level: unknown log level "warn"`,
		"server_cert_file: unreadable file",
		"server_key_file: missing required value",
		"debug_server_host: missing required value",
		"debug_server_port: must be a port",
		"uaa_client: missing required value",
		"uaa_client_secret: missing required value",
		`uaa_url: want an http or https URL (got "uaa.example.com")`,
		"uaa_port: must be a port",
		`cc_url: want an http or https URL (got "ftp://cc")`,
		"request_timeout: must be at least 1",
		"database.type: database type oracle is not supported",
		"database_migration_timeout: must be at least 1",
		"tag_length: must be between 1 and 3 (got 5)",
		"metron_address: address 10.0.0.1:3457: metron agent must be on loopback",
		"cleanup_interval: must be at least 1",
		"max_policies: must be at least 1",
		"allowed_cors_domains[0]: empty domain",
		"max_open_connections: must be at least 0",
		"ui_cells[1]: empty",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing problem %q in:\n%v", want, err)
		}
	}
}

func TestFileAuthNeedsNoUAAOrCC(t *testing.T) {
	tokens := filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := map[string]any{
		"listen_host": "127.0.0.1", "listen_port": 4002, "debug_server_host": "127.0.0.1", "debug_server_port": 31821,
		"database":   map[string]any{"type": "sqlite", "timeout": 5, "database_name": "/tmp/x.db"},
		"tag_length": 2, "metron_address": "127.0.0.1:3457", "cleanup_interval": 60, "max_policies": 150,
		"auth_tokens_file": tokens,
	}
	c, err := external.LoadConfig(write(t, base))
	if err != nil {
		t.Fatal(err)
	}
	if !c.FileAuth() || c.LogPrefix != "cfnetworking" || c.DatabaseMigrationTimeout != 600 || c.RequestTimeout != 5 {
		t.Errorf("defaults: %+v", c)
	}
	base["auth_tokens_file"] = "/nonexistent/tokens.json"
	if _, err := external.LoadConfig(write(t, base)); err == nil || !strings.Contains(err.Error(), "auth_tokens_file: unreadable file") {
		t.Errorf("missing tokens file: %v", err)
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := external.LoadConfig("/nonexistent.json"); err == nil || !strings.HasPrefix(err.Error(), "reading config: ") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(t.TempDir(), "bad.json")
	_ = os.WriteFile(path, []byte("{"), 0o600)
	if _, err := external.LoadConfig(path); err == nil || !strings.HasPrefix(err.Error(), "parsing config") {
		t.Errorf("bad json: %v", err)
	}
}
