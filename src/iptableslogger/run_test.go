package iptableslogger

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

type testDaemon struct {
	cfg    Config
	cancel context.CancelFunc
	done   chan error
}

func testConfig(t *testing.T, kernelLog string) Config {
	t.Helper()
	dir := t.TempDir()
	return Config{
		KernelLogFile:         kernelLog,
		ContainerMetadataFile: filepath.Join(dir, "store.json"),
		OutputLogFile:         filepath.Join(dir, "iptables.log"),
		MetronAddress:         "127.0.0.1:3457",
		HostIP:                "10.0.16.5",
		HostGUID:              "cell-guid",
		LogTimestampFormat:    "rfc3339",
	}
}

func startDaemon(t *testing.T, cfg Config) *testDaemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &testDaemon{cfg: cfg, cancel: cancel, done: make(chan error, 1)}
	go func() {
		d.done <- Run(ctx, logtest.New(t), cfg, Options{Sender: newSender(t), PollInterval: testPoll})
	}()
	t.Cleanup(func() { _ = d.stop(t) })
	return d
}

func (d *testDaemon) stop(t *testing.T) error {
	d.cancel()
	select {
	case err := <-d.done:
		d.done <- err
		return err
	case <-time.After(10 * time.Second):
		t.Error("Run did not return within 10 s of cancel")
		return nil
	}
}

// outputEvents returns the output file's lines, decoded.
func outputEvents(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var events []map[string]any
	for l := range strings.Lines(string(b)) {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		events = append(events, e)
	}
	return events
}

// feedUntil appends line to the kernel log until the output has n events:
// the daemon starts reading at the end of the file at some point after
// Run starts, so earlier lines may be skipped.
func feedUntil(t *testing.T, kernelLog, output, line string, n int) []map[string]any {
	t.Helper()
	var events []map[string]any
	eventually.True(t, "output events", 10*time.Second, func() bool {
		if events = outputEvents(t, output); len(events) >= n {
			return true
		}
		appendTo(t, kernelLog, line+"\n")
		time.Sleep(20 * time.Millisecond)
		return false
	})
	return events
}

func TestRunLogsPacketsAndFollowsOutputRotation(t *testing.T) {
	kernelLog := filepath.Join(t.TempDir(), "kern.log")
	appendTo(t, kernelLog, syslogIngressAllowedTCP+"\n") // before start: not logged
	cfg := testConfig(t, kernelLog)
	addContainer(t, metadata.New(cfg.ContainerMetadataFile), "dst-handle", "10.255.18.2", map[string]any{"app_id": "dst-app"})
	d := startDaemon(t, cfg)

	events := feedUntil(t, kernelLog, cfg.OutputLogFile, syslogIngressDeniedTCP, 1)
	e := events[0]
	data := e["data"].(map[string]any)
	if e["message"] != "cfnetworking.iptables.ingress-denied" || data["destination"].(map[string]any)["app_guid"] != "dst-app" {
		t.Errorf("event = %v", e)
	}
	if _, err := time.Parse(time.RFC3339Nano, e["timestamp"].(string)); err != nil {
		t.Errorf("timestamp: %v", err)
	}

	// Rotate the output away: the next events land in a new file.
	if err := os.Rename(cfg.OutputLogFile, cfg.OutputLogFile+".1"); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, "the output file recreated", 10*time.Second, func() bool {
		_, err := os.Stat(cfg.OutputLogFile)
		return err == nil
	})
	events = feedUntil(t, kernelLog, cfg.OutputLogFile, syslogEgressDeniedUDP, 1)
	if events[0]["message"] != "cfnetworking.iptables.egress-denied" {
		t.Errorf("after rotation: %v", events[0])
	}

	if err := d.stop(t); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

func TestRunStartupFailures(t *testing.T) {
	cfg := testConfig(t, filepath.Join(t.TempDir(), "missing-kern.log"))
	err := Run(context.Background(), logtest.New(t), cfg, Options{Sender: newSender(t)})
	if err == nil || !strings.Contains(err.Error(), "tail input: ") {
		t.Errorf("missing kernel log: %v", err)
	}

	kernelLog := filepath.Join(t.TempDir(), "kern.log")
	appendTo(t, kernelLog, "")
	cfg = testConfig(t, kernelLog)
	cfg.OutputLogFile = filepath.Join(t.TempDir(), "no-such-dir", "iptables.log")
	err = Run(context.Background(), logtest.New(t), cfg, Options{Sender: newSender(t)})
	if err == nil || !strings.Contains(err.Error(), "open output log file: ") {
		t.Errorf("output in a missing directory: %v", err)
	}
}
