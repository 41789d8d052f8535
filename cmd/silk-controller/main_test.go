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

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/ports"

	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "silk-controller", main)) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"listen_port": 4103, "network": "nope", "database": {"type": "sqlite"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := maintest.Command("-config", path)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1", err)
	}
	// Upstream's stderr line: log.Fatalf("cfnetworking.silk-controller error: load config: ...").
	if !strings.HasPrefix(stderr.String(), "cfnetworking.silk-controller error: load config: ") {
		t.Errorf("stderr lacks upstream's prefix:\n%s", stderr.String())
	}
	for _, want := range []string{"listen_host: missing required value", `network: invalid IPv4 CIDR "nope"`, "database.database_name: missing required value", "ca_cert_file: missing required value"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestStartsAndStopsOnSIGTERM(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	dir := t.TempDir()
	health := ports.Free(t, "127.0.0.1")
	cfg := fmt.Sprintf(`{
		"debug_server_port": %d, "listen_host": "127.0.0.1", "listen_port": %d,
		"ca_cert_file": %q, "server_cert_file": %q, "server_key_file": %q,
		"network": "10.255.0.0/16", "subnet_prefix_length": 24,
		"database": {"type": "sqlite", "database_name": %q, "timeout": 5},
		"lease_expiration_seconds": 60, "metron_port": 3457, "health_check_port": %d}`,
		ports.Free(t, "127.0.0.1"), ports.Free(t, "127.0.0.1"), files.CAFile, files.ServerCert, files.ServerKey, filepath.Join(dir, "silk.db"), health)
	path := filepath.Join(dir, "c.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	proc := maintest.Start(t, maintest.Command("-config", path))
	proc.Until(t, "healthy", 20*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", health))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	proc.Terminate(t, 15*time.Second)
	stdout := proc.Out
	if !strings.Contains(stdout.String(), `"source":"cfnetworking.silk-controller"`) {
		t.Errorf("logs are not under cfnetworking.silk-controller:\n%s", stdout.String())
	}

	// Upstream's lifecycle lines, in order, at info, without data.
	var lifecycle []logtest.Line
	for _, l := range logtest.ParseJSON(t, stdout.String()) {
		switch strings.TrimPrefix(l.Message, "cfnetworking.silk-controller.") {
		case "starting", "parsed-config", "starting-servers", "running", "exited", "exited-with-failure":
			lifecycle = append(lifecycle, l)
		}
	}
	want := []logtest.Line{
		{Message: "cfnetworking.silk-controller.starting", Level: "info"},
		{Message: "cfnetworking.silk-controller.parsed-config", Level: "info"},
		{Message: "cfnetworking.silk-controller.starting-servers", Level: "info"},
		{Message: "cfnetworking.silk-controller.running", Level: "info"},
		{Message: "cfnetworking.silk-controller.exited", Level: "info"},
	}
	if diff := cmp.Diff(want, lifecycle, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("lifecycle lines (-want +got):\n%s", diff)
	}
}
