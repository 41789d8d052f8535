package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudfoundry/sonde-go/events"
	"google.golang.org/protobuf/proto"

	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, job, main)) }

func runFailing(t *testing.T, cmd *exec.Cmd) string { t.Helper(); return maintest.Fails(t, cmd, 1) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netmon.json")
	configtest.WriteFile(t, path, map[string]any{
		"poll_interval": 0, "metron_address": "nope", "log_level": "loud", "log_prefix": "potato-prefix",
		"telemetry_enabled": true,
	})
	stderr := runFailing(t, maintest.Command("-config-file", path))
	for _, want := range []string{
		// Upstream reports config errors before it reads log_prefix.
		"cfnetworking.netmon: reading config: invalid config:",
		"poll_interval: must be at least 1 (got 0)",
		"metron_address: address nope: missing port in address",
		"interface_name: missing required value",
		`log_level: unknown log level "loud"`,
		"iptables_lock_file: missing required value",
		"telemetry_interval: must be set to a positive, non-zero value if telemetry_enabled is true (got 0)",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestMissingConfigKeepsUpstreamsWording(t *testing.T) {
	stderr := runFailing(t, maintest.Command("-config-file", "/some/bad/path"))
	if want := "cfnetworking.netmon: reading config: file does not exist: stat /some/bad/path: no such file or directory\n"; stderr != want {
		t.Errorf("stderr = %q, want %q", stderr, want)
	}
}

// writeConfig writes a config polling every second and returns its path.
func writeConfig(t *testing.T, metron, ifname string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "netmon.json")
	configtest.WriteFile(t, path, map[string]any{
		"poll_interval": 1, "metron_address": metron, "interface_name": ifname,
		"log_level": "debug", "log_prefix": "cfnetworking",
		"iptables_lock_file": filepath.Join(dir, "garden-cni", "iptables.lock"),
	})
	return path
}

// process is a started netmon.
type process struct {
	cmd            *exec.Cmd
	stdout, stderr *maintest.Buffer
	done           chan error
}

func start(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{cmd: cmd, stdout: &maintest.Buffer{}, stderr: &maintest.Buffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and expects a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM = %v; stderr:\n%s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not exit within 10 s of SIGTERM")
	}
}

// readMetrics reads dropsonde envelopes from metron until every name in
// want has arrived, and returns the first of each.
func readMetrics(t *testing.T, metron net.PacketConn, want ...string) map[string]*events.Envelope {
	t.Helper()
	got := map[string]*events.Envelope{}
	buf := make([]byte, 65536)
	deadline := time.Now().Add(15 * time.Second)
	for {
		missing := false
		for _, w := range want {
			if got[w] == nil {
				missing = true
			}
		}
		if !missing {
			return got
		}
		_ = metron.SetReadDeadline(deadline)
		n, _, err := metron.ReadFrom(buf)
		if err != nil {
			t.Fatalf("waiting for %v (have %v): %v", want, got, err)
		}
		env := &events.Envelope{}
		if err := proto.Unmarshal(buf[:n], env); err != nil {
			t.Fatal(err)
		}
		if name := env.GetValueMetric().GetName(); got[name] == nil {
			got[name] = env
		}
	}
}

func TestReportsAndStopsOnSIGTERM(t *testing.T) {
	metron, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer metron.Close()
	// An interface that does not exist: logged every poll, not fatal.
	p := start(t, maintest.Command("-config-file", writeConfig(t, metron.LocalAddr().String(), "nm-absent0")))

	env := readMetrics(t, metron, "NetInterfaceCount")["NetInterfaceCount"]
	if env.GetOrigin() != "netmon" || env.GetEventType() != events.Envelope_ValueMetric ||
		env.GetValueMetric().GetUnit() != "Metric" || env.GetValueMetric().GetValue() < 1 {
		t.Errorf("envelope = %v", env)
	}
	out := p.stdout.String()
	for _, want := range []string{
		`"source":"cfnetworking.netmon","message":"cfnetworking.netmon.parsed-config"`,
		`"message":"cfnetworking.netmon.measure.measure-start"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %s:\n%s", want, out)
		}
	}
	// The next poll fails at count-iptables-rules (not root) or
	// read-tx-bytes (root); either way netmon keeps running.
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stdout.String(), `"message":"cfnetworking.netmon.measure.read-tx-bytes"`) &&
		!strings.Contains(p.stdout.String(), `"message":"cfnetworking.netmon.measure.count-iptables-rules"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged:\n%s", p.stdout.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.stop(t)
}
