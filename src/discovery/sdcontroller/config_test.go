package sdcontroller

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// TestExampleConfig keeps config/service-discovery-controller.json (what
// upstream's job template renders with cf-deployment's values) loadable:
// only the certificate paths, BOSH's and absent here, are reported.
func TestExampleConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "..", "..", "config", "service-discovery-controller.json"))
	want := []string{"server_cert", "server_key", "ca_cert", "nats.ca_certs", "nats.cert_chain", "nats.private_key"}
	if diff := cmp.Diff(want, configtest.ProblemKeys(err)); diff != "" {
		t.Errorf("problems in example config (-want +got):\n%s", diff)
	}
	if time.Duration(c.ReadHeaderTimeout) != 30*time.Second || c.Port != "8054" || c.Nats.Hosts[0].Port != 4224 {
		t.Errorf("example config read as %+v", c)
	}
}

func TestConfigNamesEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{
		"port": "80540", "ca_cert": "/nonexistent/ca.crt", "metron_port": 0, "log_level_port": 70000,
		"staleness_threshold_seconds": 0, "pruning_interval_seconds": -1, "metrics_emit_seconds": 0,
		"resume_pruning_delay_seconds": -1, "warm_duration_seconds": -5,
		"nats": {"hosts": [{"hostname": "", "port": 0}], "tls_enabled": true}
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(path)
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		"address: missing required value",
		"port: must be a port between 1 and 65535 (got 80540)",
		"server_cert: missing required value",
		"server_key: missing required value",
		"ca_cert: unreadable file /nonexistent/ca.crt",
		"metron_port: must be at least 1 (got 0)",
		"log_level_address: missing required value",
		"log_level_port: must be a port between 1 and 65535 (got 70000)",
		"staleness_threshold_seconds: must be at least 1 (got 0)",
		"pruning_interval_seconds: must be at least 1 (got -1)",
		"metrics_emit_seconds: must be at least 1 (got 0)",
		"resume_pruning_delay_seconds: must be at least 0 (got -1)",
		"warm_duration_seconds: must be at least 0 (got -5)",
		"nats.hosts[0].hostname: missing required value",
		"nats.hosts[0].port: must be a port between 1 and 65535 (got 0)",
		"nats.ca_certs: missing required value",
		"nats.cert_chain: missing required value",
		"nats.private_key: missing required value",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
}

func TestConfigUnparsable(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"garbage":      `garbage`,
		"bad duration": `{"read_header_timeout": "thirty"}`,
		"port number":  `{"port": 8054}`,
	} {
		path := filepath.Join(dir, "c.json")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig(path); err == nil || !strings.Contains(err.Error(), "parsing config") {
			t.Errorf("%s: err = %v, want a parse error", name, err)
		}
	}
}

func TestNatsServers(t *testing.T) {
	c := Config{Nats: NatsConfig{Hosts: []NatsHost{{"nats.service.cf.internal", 4222}, {"10.0.0.5", 4223}}}}
	if diff := cmp.Diff([]string{"nats://nats.service.cf.internal:4222", "nats://10.0.0.5:4223"}, c.NatsServers()); diff != "" {
		t.Errorf("without credentials (-want +got):\n%s", diff)
	}
	c.Nats.User, c.Nats.Pass = "nats", "p@ss:w/rd"
	if got, want := c.natsURL(), "nats://nats:p%40ss%3Aw%2Frd@nats.service.cf.internal:4222,nats://nats:p%40ss%3Aw%2Frd@10.0.0.5:4223"; got != want {
		t.Errorf("natsURL = %q, want %q", got, want)
	}
}

func TestDuration(t *testing.T) {
	for body, want := range map[string]time.Duration{`{"d":"30s"}`: 30 * time.Second, `{"d":""}`: 0, `{}`: 0, `{"d":"1m30s"}`: 90 * time.Second} {
		var c struct {
			D discovery.Duration `json:"d"`
		}
		if err := json.Unmarshal([]byte(body), &c); err != nil || time.Duration(c.D) != want {
			t.Errorf("%s: %v %v, want %v", body, time.Duration(c.D), err, want)
		}
	}
	for _, body := range []string{`{"d":30}`, `{"d":"30"}`} {
		var c struct {
			D discovery.Duration `json:"d"`
		}
		if err := json.Unmarshal([]byte(body), &c); err == nil {
			t.Errorf("%s accepted", body)
		}
	}
}
