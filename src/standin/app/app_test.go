package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/standin/boshdns"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// TestAppCallsAndReports: a caller app reaches a serving app, then, with
// the server gone, logs the denial.
func TestAppCallsAndReports(t *testing.T) {
	port := ports.Free(t, "127.0.0.1")
	backendCtx, stopBackend := context.WithCancel(context.Background())
	backendDone := make(chan error, 1)
	go func() {
		backendDone <- Run(backendCtx, []string{"--name", "backend", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, io.Discard)
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feDone, waitFor := startCaller(t, ctx, "--call", fmt.Sprintf("http://127.0.0.1:%d/", port))
	// The first calls may come before the backend listens, and a call
	// cut short by its stopping is reset rather than refused.
	ok := waitFor(time.Time{}, func(c Call) bool { return c.Allowed })
	if !strings.Contains(ok.Detail, "hello from backend") {
		t.Errorf("allowed call: %q", ok.Detail)
	}
	stopBackend()
	if err := <-backendDone; err != nil {
		t.Fatal(err)
	}
	waitFor(ok.Time, func(c Call) bool { return !c.Allowed && strings.Contains(c.Detail, "connection refused") })
	cancel()
	if err := <-feDone; err != nil {
		t.Fatal(err)
	}
}

// TestCallerAppliesCallsInStartOrder: a call that waits out its timeout
// holds back the ones started after it, so the log tells when the outcome
// changed for calls as they were made.
func TestCallerAppliesCallsInStartOrder(t *testing.T) {
	var out bytes.Buffer
	c := &caller{next: 1, done: map[uint64]result{}}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	c.record(1, at(0), "allowed 200 hi", &out)
	c.record(3, at(40), "denied connection refused", &out) // finished first
	c.record(4, at(60), "denied connection refused", &out)
	c.record(2, at(20), "denied timeout", &out) // the earlier call, timed out
	c.record(5, at(1100), "denied connection refused", &out)
	want := strings.Join([]string{
		"2025-01-02T03:04:05Z allowed 200 hi",
		"2025-01-02T03:04:05.02Z denied timeout",
		"2025-01-02T03:04:06.1Z denied connection refused", // a second on: printed again
	}, "\n") + "\n"
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	if got := c.status(); got != "denied connection refused" {
		t.Errorf("status %q", got)
	}
}

func TestReadCalls(t *testing.T) {
	path := filepath.Join(t.TempDir(), "frontend.log")
	log := "2025-01-02T03:04:05Z frontend listening on :8080\n" +
		"2025-01-02T03:04:05.5Z denied dial tcp 10.255.1.2:8080: connect: connection refused\n" +
		"garbage\n" +
		"2025-01-02T03:04:06Z allowed 200 hello from backend (10.255.1.2:8080)\n"
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, err := ReadCalls(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []Call{
		{Time: time.Date(2025, 1, 2, 3, 4, 5, 5e8, time.UTC), Detail: "dial tcp 10.255.1.2:8080: connect: connection refused"},
		{Time: time.Date(2025, 1, 2, 3, 4, 6, 0, time.UTC), Allowed: true, Detail: "200 hello from backend (10.255.1.2:8080)"},
	}
	if diff := cmp.Diff(want, calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
}

// TestAppCallsByName: with --dns the caller resolves the host of --call
// for every call through that server; a name that stops resolving is a
// denied "lookup" call, which does not count as resolved.
func TestAppCallsByName(t *testing.T) {
	port := ports.Free(t, "127.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	backendDone := make(chan error, 1)
	go func() {
		backendDone <- Run(ctx, []string{"--name", "backend", "--listen", fmt.Sprintf("127.0.0.1:%d", port)}, io.Discard)
	}()
	dns, resolveTo := startDNS(t)
	resolveTo("127.0.0.1")

	feDone, waitFor := startCaller(t, ctx, "--dns", dns, "--call", fmt.Sprintf("http://backend.apps.internal:%d/", port))
	ok := waitFor(time.Time{}, func(c Call) bool { return c.Allowed })
	if !ok.Resolved() || !strings.Contains(ok.Detail, "hello from backend (127.0.0.1:") {
		t.Errorf("allowed call: %+v", ok)
	}
	resolveTo()
	denied := waitFor(ok.Time, func(c Call) bool { return !c.Allowed })
	if want := "lookup backend.apps.internal via " + dns + ": no such host"; denied.Resolved() || denied.Detail != want {
		t.Errorf("denied call %+v, want %q", denied, want)
	}
	cancel()
	for _, done := range []chan error{feDone, backendDone} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// startDNS runs a DNS front end on a free loopback port answering
// backend.apps.internal from a stand-in for bosh-dns-adapter, and returns
// its address and how to set the name's addresses (none: no such host).
func startDNS(t *testing.T) (string, func(ips ...string)) {
	t.Helper()
	var answer atomic.Value
	answer.Store([]string(nil))
	adapter := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type record struct {
			Name string `json:"name"`
			Type int    `json:"type"`
			TTL  int    `json:"TTL"`
			Data string `json:"data"`
		}
		records := []record{}
		if r.URL.Query().Get("type") == "1" {
			for _, ip := range answer.Load().([]string) {
				records = append(records, record{r.URL.Query().Get("name"), 1, 0, ip})
			}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Status": 0, "Answer": records})
	}))
	t.Cleanup(adapter.Close)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	f := &boshdns.FrontEnd{Handlers: boshdns.Handlers(adapter.URL, "apps.internal")}
	go func() { _ = f.ServeUDP(context.Background(), pc) }()
	return pc.LocalAddr().String(), func(ips ...string) { answer.Store(ips) }
}

// startCaller runs a "frontend" app calling every 5 ms with args until ctx
// is done, and returns its exit and how to wait (up to 10 s) for its first
// call since a time that matches.
func startCaller(t *testing.T, ctx context.Context, args ...string) (chan error, func(since time.Time, match func(Call) bool) Call) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "frontend.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { log.Close() })
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, append([]string{"--name", "frontend", "--listen", "127.0.0.1:0", "--every", "5ms"}, args...), log)
	}()
	return done, func(since time.Time, match func(Call) bool) Call {
		t.Helper()
		c, err := WaitCall(ctx, logPath, since, time.Now().Add(10*time.Second), match)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
}
