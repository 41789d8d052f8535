package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "vxlan-policy-agent", main)) }

func run(t *testing.T, config string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return maintest.Fails(t, maintest.Command("-config-file", path), 1)
}

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	stderr := run(t, `{"poll_interval": 0, "policy_server_url": "nope"}`)
	for _, want := range []string{"cfnetworking: could not read config file ", "poll_interval", "policy_server_url", "cni_datastore_path: missing required value"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// Upstream exits when its start-up policies request fails; the rules in
// the kernel stay as they are (nothing was written yet).
func TestUnreachablePolicyServerExits(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`{
		"poll_interval": 5, "cni_datastore_path": %q, "policy_server_url": "https://127.0.0.1:%d",
		"vni": 1, "metron_address": "127.0.0.1:3457", "ca_cert_file": %q, "client_cert_file": %q, "client_key_file": %q,
		"client_timeout_seconds": 1, "iptables_lock_file": %q, "debug_server_host": "127.0.0.1", "debug_server_port": %d,
		"log_prefix": "cfnetworking", "iptables_accepted_udp_logs_per_sec": 100, "force_policy_poll_cycle_host": "127.0.0.1",
		"force_policy_poll_cycle_port": %d}`,
		filepath.Join(dir, "store.json"), ports.Free(t, "127.0.0.1"), files.CAFile, files.ClientCert, files.ClientKey,
		filepath.Join(dir, "iptables.lock"), ports.Free(t, "127.0.0.1"), ports.Free(t, "127.0.0.1"))), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout maintest.Buffer
	cmd := maintest.Command("-config-file", path)
	cmd.Stdout = &stdout
	maintest.Fails(t, cmd, 1)

	// Upstream: "parsed-config" with the config, then die()'s error line
	// "policy-client-get-policies"; no "starting" (that comes once running).
	lines := logtest.ParseJSON(t, stdout.String())
	if diff := cmp.Diff([]string{
		"cfnetworking.vxlan-policy-agent.parsed-config",
		"cfnetworking.vxlan-policy-agent.policy-client-get-policies",
	}, logtest.MessagesIn(lines)); diff != "" {
		t.Fatalf("messages (-want +got):\n%s\n%s", diff, stdout.String())
	}
	parsed, failed := lines[0], lines[1]
	if cfg, _ := parsed.Data["config"].(map[string]any); parsed.Level != "info" || cfg["poll_interval"] != 5.0 || cfg["cni_datastore_path"] != filepath.Join(dir, "store.json") {
		t.Errorf("parsed-config = %+v, want info with the config under upstream's keys", parsed)
	}
	if e, _ := failed.Data["error"].(string); failed.Level != "error" || !strings.Contains(e, "policy-server-internal unreachable") {
		t.Errorf("failure line = %+v", failed)
	}
}
