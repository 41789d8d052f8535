package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, job, main)) }

// exampleConfig is config/policy-server.json with changes applied.
func exampleConfig(t *testing.T, change func(map[string]any)) string {
	t.Helper()
	b, err := os.ReadFile("../../config/policy-server.json")
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	change(c)
	path := filepath.Join(t.TempDir(), "policy-server.json")
	configtest.WriteFile(t, path, c)
	return path
}

func TestBadConfigKeepsTheDefaultPrefix(t *testing.T) {
	path := exampleConfig(t, func(c map[string]any) {
		c["log_prefix"] = "cf"
		delete(c, "tag_length")
	})
	stderr := maintest.Fails(t, maintest.Command("-config-file", path), 1)
	// Upstream's log.Fatalf runs before the prefix is read.
	if !strings.HasPrefix(stderr, "cfnetworking.policy-server: could not read config file: ") || !strings.Contains(stderr, "tag_length") {
		t.Errorf("stderr = %q", stderr)
	}
}

// Upstream logs "db migrations and populating tags failed" and exits 3
// when the migration timeout passes; no "exited-with-failure" line.
func TestMigrationTimeoutExits3WithUpstreamsLine(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"t": {"user_name": "u"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	path := exampleConfig(t, func(c map[string]any) {
		db := c["database"].(map[string]any)
		db["database_name"] = dir // a directory: never openable as a database
		c["database_migration_timeout"] = 1
		c["auth_tokens_file"] = tokens
	})
	var stdout maintest.Buffer
	cmd := maintest.Command("-config-file", path)
	cmd.Stdout = &stdout
	maintest.Fails(t, cmd, 3)

	lines := logtest.ParseJSON(t, stdout.String())
	failed := logtest.FindIn(lines, "cfnetworking.policy-server.db migrations and populating tags failed")
	if len(failed) != 1 || failed[0].Level != "error" || failed[0].Data["error"] != "migrations and groups table population timed out after 1 seconds" {
		t.Errorf("failure lines = %+v\n%s", failed, stdout.String())
	}
	if got := logtest.FindIn(lines, "cfnetworking.policy-server.exited-with-failure"); len(got) != 0 {
		t.Errorf("also logged exited-with-failure: %+v", got)
	}
	retries := logtest.FindIn(lines, "cfnetworking.policy-server.failed migrating and populating tags, retrying")
	if len(retries) == 0 || retries[0].Level != "error" {
		t.Errorf("retry lines = %+v", retries)
	}
}

// Upstream's start and stop lines: "starting external server" with the
// address and port, then "exited" without data after SIGTERM.
func TestStartsAndExitsWithUpstreamsLines(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{"t": {"user_name": "u"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	port := ports.Free(t, "127.0.0.1")
	path := exampleConfig(t, func(c map[string]any) {
		c["listen_host"], c["listen_port"] = "127.0.0.1", port
		c["debug_server_port"] = ports.Free(t, "127.0.0.1")
		c["database"].(map[string]any)["database_name"] = filepath.Join(dir, "policy.db")
		c["auth_tokens_file"] = tokens
	})
	proc := maintest.Start(t, maintest.Command("-config-file", path))
	proc.Until(t, "serving", 20*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	proc.Terminate(t, 15*time.Second)
	stdout := proc.Out

	lines := logtest.ParseJSON(t, stdout.String())
	starting := logtest.FindIn(lines, "cfnetworking.policy-server.starting external server")
	if diff := cmp.Diff([]logtest.Line{{
		Message: "cfnetworking.policy-server.starting external server", Level: "info",
		Data: map[string]any{"listen-address": "127.0.0.1", "port": float64(port)},
	}}, starting); diff != "" {
		t.Errorf("starting external server (-want +got):\n%s", diff)
	}
	exited := logtest.FindIn(lines, "cfnetworking.policy-server.exited")
	if diff := cmp.Diff([]logtest.Line{{Message: "cfnetworking.policy-server.exited", Level: "info"}}, exited, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("exited (-want +got):\n%s", diff)
	}
	if msgs := logtest.MessagesIn(lines); msgs[len(msgs)-1] != "cfnetworking.policy-server.exited" {
		t.Errorf("last line %q, want exited", msgs[len(msgs)-1])
	}
}
