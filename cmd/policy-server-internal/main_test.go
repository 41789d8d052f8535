package main

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls/mtlstest"

	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "policy-server-internal", main)) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"log_prefix": "cf", "internal_listen_port": 4003, "database": {"type": "sqlite"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := maintest.Command("-config-file", path)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	for _, want := range []string{
		// Upstream writes the default prefix even when the broken config
		// names another.
		"cfnetworking.policy-server-internal: could not read config file: invalid config:",
		"listen_host: missing required value", "database.database_name: missing required value",
		"ca_cert_file: missing required value", "tag_length: missing required value", "metron_address: missing required value",
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}

	stderr.Reset()
	cmd = maintest.Command("-config-file", filepath.Join(t.TempDir(), "missing.json"))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || !strings.HasPrefix(stderr.String(), "cfnetworking.policy-server-internal: could not read config file: reading config: ") {
		t.Errorf("missing file: %v, stderr %q", err, stderr.String())
	}
}

func TestStartsAndStopsOnSIGTERM(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	dir := t.TempDir()
	health := ports.Free(t, "127.0.0.1")
	cfg := fmt.Sprintf(`{
		"log_prefix": "cfnetworking", "listen_host": "127.0.0.1", "internal_listen_port": %d,
		"debug_server_host": "127.0.0.1", "debug_server_port": %d, "health_check_port": %d,
		"ca_cert_file": %q, "server_cert_file": %q, "server_key_file": %q,
		"database": {"type": "sqlite", "database_name": %q, "timeout": 5},
		"tag_length": 1, "metron_address": "127.0.0.1:3457", "log_level": "debug"}`,
		ports.Free(t, "127.0.0.1"), ports.Free(t, "127.0.0.1"), health, files.CAFile, files.ServerCert, files.ServerKey, filepath.Join(dir, "policy.db"))
	path := filepath.Join(dir, "c.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := maintest.Start(t, maintest.Command("-config-file", path))
	proc.Until(t, "healthy", 60*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", health))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	proc.Terminate(t, 20*time.Second)
	stdout := proc.Out
	out := stdout.String()
	for _, want := range []string{
		`"source":"cfnetworking.policy-server-internal"`,
		`"message":"cfnetworking.policy-server-internal.starting internal server"`,
		`"message":"cfnetworking.policy-server-internal.db connection retrieved"`,
		`"message":"cfnetworking.policy-server-internal.exited"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}
