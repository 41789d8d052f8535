package asgsyncer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/policy-server-asg-syncer.json loadable:
// only the certificate paths (BOSH's, absent here) are reported.
func TestExampleConfig(t *testing.T) {
	c, err := asgsyncer.LoadConfig(filepath.Join("..", "..", "..", "config", "policy-server-asg-syncer.json"))
	want := []string{
		"uaa_ca", "cc_ca_cert", "cc_internal_ca_cert", "cc_internal_client_cert", "cc_internal_client_key",
		"locket_ca_cert_file", "locket_client_cert_file", "locket_client_key_file",
	}
	if diff := cmp.Diff(want, configtest.ProblemKeys(err)); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if c.PollInterval() != time.Minute || c.RetryDeadline() != 5*time.Minute || !c.UseLocket() || c.UAABaseURL() != "https://uaa.service.cf.internal:8443" {
		t.Errorf("example config does not carry upstream's defaults: %+v", c)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.json")
	write := func(v map[string]any) {
		t.Helper()
		b, _ := json.Marshal(v)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(map[string]any{
		"asg_poll_interval_seconds": 0,
		"retry_deadline_seconds":    0,
		"database":                  map[string]any{"type": "oracle", "timeout": 5, "database_name": "x"},
		"uaa_url":                   "uaa.example.com",
		"uaa_port":                  70000,
		"cc_url":                    "ftp://cc",
		"metron_address":            "10.0.0.1:3457",
		"log_level":                 "warn",
		"locket_address":            "Locket:port",
		"request_timeout":           0,
		"log_prefix":                "",
	})
	_, err := asgsyncer.LoadConfig(path)
	for _, want := range []string{
		"asg_poll_interval_seconds: must be at least 1",
		"retry_deadline_seconds: must be at least 1",
		"uuid: missing required value",
		"database.type: database type oracle is not supported",
		"uaa_client: missing required value",
		"uaa_client_secret: missing required value",
		`uaa_url: want an http or https URL (got "uaa.example.com")`,
		"uaa_port: must be a port",
		`cc_url: want an http or https URL (got "ftp://cc")`,
		"cc_internal_url: missing required value",
		"cc_internal_ca_cert: missing required value",
		"log_level: unknown log level",
		"log_prefix: missing required value",
		"metron_address: address 10.0.0.1:3457: metron agent must be on loopback",
		`locket_address: the locket_address is invalid (got "Locket:port")`,
		"locket_ca_cert_file: missing required value",
		"request_timeout: must be at least 1",
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestKeepaliveSeconds(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{in: `10`, want: 10 * time.Second},
		{in: `"22s"`, want: 22 * time.Second},
		{in: `1.5`, want: 1500 * time.Millisecond},
		{in: `"soon"`, bad: true},
		{in: `true`, bad: true},
	} {
		var s asgsyncer.Seconds
		err := json.Unmarshal([]byte(tc.in), &s)
		if (err != nil) != tc.bad || (!tc.bad && time.Duration(s) != tc.want) {
			t.Errorf("%s: got %v, %v", tc.in, time.Duration(s), err)
		}
		if tc.bad {
			continue
		}
		// Written back, it reads the same.
		var again asgsyncer.Seconds
		if b, err := json.Marshal(s); err != nil || json.Unmarshal(b, &again) != nil || again != s {
			t.Errorf("%s: marshalled as %s (%v), read back as %v", tc.in, b, err, time.Duration(again))
		}
	}
}
