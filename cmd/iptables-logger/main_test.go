package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/sonde-go/events"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"

	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, job, main)) }

func runFailing(t *testing.T, cmd *exec.Cmd) string { t.Helper(); return maintest.Fails(t, cmd, 1) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	configtest.WriteFile(t, path, map[string]any{"host_ip": "nope", "log_timestamp_format": "unix", "log_prefix": "potato-prefix"})
	stderr := runFailing(t, maintest.Command("-config-file", path))
	for _, want := range []string{
		// Upstream has no log_prefix: its config errors always carry the default.
		"cfnetworking.iptables-logger: reading config: invalid config:",
		"kernel_log_file: missing required value",
		"container_metadata_file: missing required value",
		"output_log_file: missing required value",
		"metron_address: missing required value",
		`host_ip: invalid IP address "nope"`,
		"host_guid: missing required value",
		`log_timestamp_format: want "rfc3339" or "deprecated" (got "unix")`,
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestMissingConfigKeepsUpstreamsWording(t *testing.T) {
	stderr := runFailing(t, maintest.Command("-config-file", "/some/bad/path"))
	if !strings.HasPrefix(stderr, "cfnetworking.iptables-logger: reading config: ") || !strings.Contains(stderr, "/some/bad/path") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// cell is a config for a daemon working in a temporary directory.
type cell struct {
	dir, config, kernelLog, output, store string
}

func newCell(t *testing.T, metron string) cell {
	t.Helper()
	dir := t.TempDir()
	c := cell{
		dir: dir, config: filepath.Join(dir, "iptables-logger.json"),
		kernelLog: filepath.Join(dir, "kern.log"), output: filepath.Join(dir, "iptables.log"),
		store: filepath.Join(dir, "container-metadata", "store.json"),
	}
	configtest.WriteFile(t, c.config, map[string]any{
		"kernel_log_file": c.kernelLog, "container_metadata_file": c.store, "output_log_file": c.output,
		"metron_address": metron, "host_ip": "1.2.3.4", "host_guid": "some-guid",
		"log_timestamp_format": "deprecated",
	})
	return c
}

func TestMissingKernelLogExits(t *testing.T) {
	c := newCell(t, "127.0.0.1:3457")
	stderr := runFailing(t, maintest.Command("-config-file", c.config))
	if !strings.Contains(stderr, "cfnetworking.iptables-logger: tail input: stat "+c.kernelLog+": no such file or directory") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

func appendLine(t *testing.T, path, line string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line + "\n"); err != nil {
		t.Fatal(err)
	}
}

// outputLines returns the output's lines with the timestamp checked and
// replaced, as upstream's integration test compares them.
func outputLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for l := range strings.Lines(string(b)) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		if ts, _ := m["timestamp"].(string); !strings.Contains(ts, ".") {
			t.Errorf("deprecated timestamp = %q", ts)
		}
		m["timestamp"] = "some-timestamp"
		j, _ := json.Marshal(m)
		out = append(out, string(j))
	}
	return out
}

// canonical re-encodes JSON with sorted keys.
func canonical(t *testing.T, s string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	j, _ := json.Marshal(m)
	return string(j)
}

const (
	egressAllowedLine = "Jun 28 18:21:24 cell kernel: [100471.222018] OK_container-handle-1-longer IN=s-010255178004 OUT=eth0 MAC=aa:aa:0a:ff:b2:04:ee:ee:0a:ff:b2:04:08:00 SRC=10.255.0.1 DST=10.10.10.10 LEN=29 TOS=0x00 PREC=0x00 TTL=63 ID=2806 DF PROTO=UDP SPT=36556 DPT=11111 LEN=9 MARK=0x1"
	egressDeniedLine  = "Jun 30 16:07:06 cell kernel: [265213.303412] DENY_container-handle-1-long IN=s-010255095010 OUT=eth0 MAC=aa:aa:0a:ff:5f:0a:ee:ee:0a:ff:5f:0a:08:00 SRC=10.255.0.1 DST=10.10.10.10 LEN=30 TOS=0x00 PREC=0x00 TTL=63 ID=2535 DF PROTO=UDP SPT=45564 DPT=25555 LEN=10 MARK=0x1"
	source            = `"source":{"container_id":"container-handle-1-longer-than-29-chars","app_guid":"app_id_1","space_guid":"space_id_1","organization_guid":"organization_id_1","host_ip":"1.2.3.4","host_guid":"some-guid"}`
)

var (
	egressAllowedJSON = `{"timestamp":"some-timestamp","source":"cfnetworking.iptables","message":"cfnetworking.iptables.egress-allowed","log_level":1,"data":{` + source + `,"packet":{"direction":"egress","allowed":true,"src_ip":"10.255.0.1","src_port":36556,"dst_ip":"10.10.10.10","dst_port":11111,"protocol":"UDP","mark":"0x1","icmp_code":0,"icmp_type":0}}}`
	egressDeniedJSON  = `{"timestamp":"some-timestamp","source":"cfnetworking.iptables","message":"cfnetworking.iptables.egress-denied","log_level":1,"data":{` + source + `,"packet":{"direction":"egress","allowed":false,"src_ip":"10.255.0.1","src_port":45564,"dst_ip":"10.10.10.10","dst_port":25555,"protocol":"UDP","mark":"0x1","icmp_code":0,"icmp_type":0}}}`
)

// waitFor appends line to the kernel log until the output holds want: the
// process may not have reached the end of the file when the line is first
// written.
func waitFor(t *testing.T, c cell, line, want string) {
	t.Helper()
	want = canonical(t, want)
	eventually.True(t, "output line "+want, 10*time.Second, func() bool {
		for _, l := range outputLines(t, c.output) {
			if l == want {
				return true
			}
		}
		appendLine(t, c.kernelLog, line)
		time.Sleep(50 * time.Millisecond)
		return false
	})
}

func TestLogsPacketsFollowsRotationAndStopsOnSIGTERM(t *testing.T) {
	metron, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer metron.Close()
	c := newCell(t, metron.LocalAddr().String())
	appendLine(t, c.kernelLog, egressDeniedLine) // before start: skipped
	store := metadata.New(c.store)
	ctx := context.Background()
	if err := store.Add(ctx, "container-handle-1-longer-than-29-chars", "10.255.0.1", map[string]any{
		"org_id": "organization_id_1", "space_id": "space_id_1", "app_id": "app_id_1", "policy_group_id": "policy_group_id_1",
	}); err != nil {
		t.Fatal(err)
	}

	stdout := &maintest.Buffer{}
	var stderr bytes.Buffer
	cmd := maintest.Command("-config-file", c.config)
	cmd.Stdout, cmd.Stderr = stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})
	eventually.True(t, "started tailing file", 10*time.Second, func() bool { return strings.Contains(stdout.String(), "started tailing file") })
	// Upstream's start-up lines, at info, without data.
	var startup []logtest.Line
	for _, l := range logtest.ParseJSON(t, stdout.String()) {
		if l.Level == "info" {
			startup = append(startup, l)
		}
	}
	if diff := cmp.Diff([]logtest.Line{
		{Message: "cfnetworking.iptables-logger.starting", Level: "info"},
		{Message: "cfnetworking.iptables-logger.started tailing file", Level: "info"},
	}, startup, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("start-up lines (-want +got):\n%s", diff)
	}

	waitFor(t, c, egressAllowedLine, egressAllowedJSON)
	for _, l := range outputLines(t, c.output) {
		if strings.Contains(l, "egress-denied") {
			t.Errorf("a line written before start was logged: %s", l)
		}
	}

	// Rotate the kernel log (rename and create), as logrotate does.
	if err := os.Rename(c.kernelLog, c.kernelLog+".1"); err != nil {
		t.Fatal(err)
	}
	appendLine(t, c.kernelLog, "Jun 30 16:07:05 cell kernel: [265213.000000] rotated")
	waitFor(t, c, egressDeniedLine, egressDeniedJSON)

	// The uptime metric reaches metron, origin iptables-logger.
	_ = metron.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 65536)
	n, _, err := metron.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no metric: %v", err)
	}
	env := &events.Envelope{}
	if err := proto.Unmarshal(buf[:n], env); err != nil {
		t.Fatal(err)
	}
	if env.GetOrigin() != "iptables-logger" || env.GetValueMetric().GetName() != "uptime" || env.GetValueMetric().GetUnit() != "seconds" {
		t.Errorf("first metric = %v", env)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM = %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit within 10 s of SIGTERM")
	}
}
