package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "healthchecker", main)) }

func writeConfig(t *testing.T, url, counter string) string {
	t.Helper()
	host, port, err := net.SplitHostPort(url)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	path := filepath.Join(t.TempDir(), "healthchecker.yml")
	configtest.WriteFile(t, path, map[string]any{
		"component_name": "silk-daemon-healthchecker", "failure_counter_file": counter, "log_level": "debug",
		"healthcheck_endpoint":      map[string]any{"host": host, "port": p},
		"healthcheck_poll_interval": "5ms", "start_response_delay_interval": "1ms", "startup_delay_buffer": "1ms",
	})
	return path
}

func TestUnhealthyDaemon(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	counter := filepath.Join(t.TempDir(), "count")
	stderr := maintest.Fails(t, maintest.Command("-c", writeConfig(t, srv.Listener.Addr().String(), counter)), 1)
	if stderr != "healthchecker: 503 received from healthcheck endpoint (200 expected)\n" {
		t.Errorf("stderr %q", stderr)
	}
	if b, _ := os.ReadFile(counter); string(b) != "1\n" {
		t.Errorf("counter %q", b)
	}
}

func TestHealthyDaemonUntilSIGTERM(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	counter := filepath.Join(t.TempDir(), "count")
	if err := os.WriteFile(counter, []byte("3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := maintest.Command("-c", writeConfig(t, srv.Listener.Addr().String(), counter))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(counter); string(b) == "0\n" {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the counter was not reset by a healthy check")
		}
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h.yml")
	configtest.WriteFile(t, path, map[string]any{"failure_counter_file": "/x"})
	want := "healthchecker: Failed to validate config file: " + path + ", err: Missing component_name\n"
	if got := maintest.Fails(t, maintest.Command("-c", path), 1); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
}
