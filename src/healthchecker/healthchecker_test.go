package healthchecker_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/healthchecker"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	d := func(v time.Duration) healthchecker.Duration { return healthchecker.Duration(v) }
	tests := []struct {
		name    string
		body    string
		want    healthchecker.Config
		wantErr string
	}{
		{
			name: "silk-daemon's rendering, upstream's defaults",
			body: `{"component_name":"silk-daemon-healthchecker","failure_counter_file":"/c/count","log_level":"info",
				"healthcheck_endpoint":{"host":"127.0.0.1","port":23954}}`,
			want: healthchecker.Config{ComponentName: "silk-daemon-healthchecker", FailureCounterFile: "/c/count", LogLevel: "info",
				HealthCheckEndpoint:     healthchecker.Endpoint{Host: "127.0.0.1", Port: 23954},
				HealthCheckPollInterval: d(10 * time.Second), HealthCheckTimeout: d(5 * time.Second),
				StartResponseDelayInterval: d(30 * time.Second), StartupDelayBuffer: d(5 * time.Second)},
		},
		{
			name: "durations as text and as nanoseconds, a socket",
			body: `{"component_name":"x","failure_counter_file":"/f","healthcheck_endpoint":{"socket":"/s.sock","path":"/health"},
				"healthcheck_poll_interval":"1s","healthcheck_timeout":2000000000,"start_response_delay_interval":"1ms","startup_delay_buffer":"2ms"}`,
			want: healthchecker.Config{ComponentName: "x", FailureCounterFile: "/f", LogLevel: "info",
				HealthCheckEndpoint:     healthchecker.Endpoint{Socket: "/s.sock", Path: "/health"},
				HealthCheckPollInterval: d(time.Second), HealthCheckTimeout: d(2 * time.Second),
				StartResponseDelayInterval: d(time.Millisecond), StartupDelayBuffer: d(2 * time.Millisecond)},
		},
		{name: "no component", body: `{}`, wantErr: "err: Missing component_name"},
		{name: "no host", body: `{"component_name":"x","healthcheck_endpoint":{"port":1}}`, wantErr: "err: Missing healthcheck endpoint host or socket"},
		{name: "no port", body: `{"component_name":"x","healthcheck_endpoint":{"host":"h"}}`, wantErr: "err: Missing healthcheck endpoint port or socket"},
		{name: "socket and host", body: `{"component_name":"x","healthcheck_endpoint":{"socket":"/s","host":"h"}}`, wantErr: "err: Cannot specify both healthcheck endpoint host and socket"},
		{name: "no counter file", body: `{"component_name":"x","healthcheck_endpoint":{"host":"h","port":1}}`, wantErr: "err: Missing failure_counter_file"},
		{name: "bad duration", body: `{"component_name":"x","healthcheck_poll_interval":"soon"}`, wantErr: "Could not unmarshal config file"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := healthchecker.LoadConfig(configtest.WriteFile(t, filepath.Join(dir, strconv.Itoa(i)+".yml"), tc.body))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

// target is a health endpoint whose answer the test switches.
type target struct {
	status atomic.Int32
	hits   atomic.Int32
	// failNext makes that many of the next requests fail with 500.
	failNext atomic.Int32
}

func (tg *target) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tg.hits.Add(1)
	if tg.failNext.Add(-1) >= 0 {
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	w.WriteHeader(int(tg.status.Load()))
}

func config(t *testing.T, counter string) healthchecker.Config {
	ms := healthchecker.Duration(time.Millisecond)
	return healthchecker.Config{
		ComponentName: "test-healthchecker", FailureCounterFile: counter,
		HealthCheckPollInterval: ms, HealthCheckTimeout: healthchecker.Duration(time.Second),
		StartResponseDelayInterval: ms, StartupDelayBuffer: ms, LogLevel: "debug",
	}
}

func readCounter(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWatchdog(t *testing.T) {
	tests := []struct {
		name        string
		counter     string // file content before; "-" for no file
		status      int
		wantErr     string
		wantCounter string
	}{
		{"three failures in a row: exit and count", "4\n", 500, "500 received from healthcheck endpoint (200 expected)", "5\n"},
		{"a counter that is not a number counts from 0", "garbage", 503, "503 received from healthcheck endpoint (200 expected)", "1\n"},
		{"the counter file is created", "-", 404, "404 received from healthcheck endpoint (200 expected)", "1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counter := filepath.Join(t.TempDir(), "count")
			if tc.counter != "-" {
				configtest.WriteFile(t, filepath.Join(filepath.Dir(counter), "count"), tc.counter)
			}
			tg := &target{}
			tg.status.Store(int32(tc.status))
			srv := httptest.NewServer(tg)
			defer srv.Close()
			host, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
			cfg := config(t, counter)
			cfg.HealthCheckEndpoint = healthchecker.Endpoint{Host: host, Port: atoi(t, port), Path: "/health"}
			w, err := healthchecker.New(cfg, lager.NewLogger("t"))
			if err != nil {
				t.Fatal(err)
			}
			err = w.Run(t.Context())
			if err == nil || err.Error() != tc.wantErr {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if got := tg.hits.Load(); got != healthchecker.Retries {
				t.Errorf("%d checks, want %d", got, healthchecker.Retries)
			}
			if got := readCounter(t, counter); got != tc.wantCounter {
				t.Errorf("counter %q, want %q", got, tc.wantCounter)
			}
		})
	}
}

// TestWatchdogHealthy: successes reset the counter; a failure streak
// shorter than Retries is forgiven; a signal (ctx) ends the process cleanly.
func TestWatchdogHealthy(t *testing.T) {
	counter := filepath.Join(t.TempDir(), "count")
	configtest.WriteFile(t, filepath.Join(filepath.Dir(counter), "count"), "7\n")
	sock := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	tg := &target{}
	tg.status.Store(200)
	srv := &http.Server{Handler: tg}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	cfg := config(t, counter)
	cfg.HealthCheckEndpoint = healthchecker.Endpoint{Socket: sock, Path: "/health"}
	w, err := healthchecker.New(cfg, lager.NewLogger("t"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	waitHits := func(n int32) {
		for tg.hits.Load() < n {
			time.Sleep(time.Millisecond)
		}
	}
	waitHits(2)
	base := tg.hits.Load()
	tg.failNext.Store(healthchecker.Retries - 1) // one short of giving up
	waitHits(base + healthchecker.Retries + 3)
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
	if got := readCounter(t, counter); got != "0\n" {
		t.Errorf("counter %q, want reset to 0", got)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
