package iptableslogger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// decodedFlow is a flow record read back.
type decodedFlow struct {
	Timestamp string `json:"timestamp"`
	Source    string `json:"source"`
	Message   string `json:"message"`
	Data      struct {
		Flow        Flow      `json:"flow"`
		Source      *Endpoint `json:"source"`
		Destination *Endpoint `json:"destination"`
	} `json:"data"`
	raw string
}

// TestFlowLogsPrivileged runs the logger with flow logs on against a "cell"
// namespace the test creates, routing between two "container" namespaces
// like a cell between two containers: an allowed TCP connection that
// carries data both ways must become one record with both apps, the ports,
// verdict allowed and bytes each way once it has closed; a connection a
// DENY_ rule drops must become a record with verdict denied.
func TestFlowLogsPrivileged(t *testing.T) {
	requireKernelLogging(t)

	token := netnstest.UniqueName("")
	allowedPort := 20000 + randomInt(t, 20000)
	deniedPort := allowedPort + 1
	top := newFlowTopology(t, token, deniedPort)
	cell, appA, appB, ipA, ipB := top.cell, top.appA, top.appB, top.ipA, top.ipB

	cfg := kmsgConfig(t)
	cfg.EnableFlowLogs, cfg.FlowLogsPerSec = true, 100
	store := metadata.New(cfg.ContainerMetadataFile)
	endpoint := func(name, ip string) Endpoint {
		logConfig := fmt.Sprintf(`{"guid":"app-%s-%s","index":0,"source_name":"CELL","tags":{"app_name":"%s","space_name":"dev","organization_name":"acme"}}`, name, token, name)
		if err := store.Add(context.Background(), "container-"+name+"-"+token, ip, map[string]any{
			"app_id": "app-" + name + "-" + token, "space_id": "space-" + token, "org_id": "org-" + token,
			metadata.LogConfigKey: logConfig,
		}); err != nil {
			t.Fatal(err)
		}
		return Endpoint{
			ContainerID: "container-" + name + "-" + token, AppGUID: "app-" + name + "-" + token,
			SpaceGUID: "space-" + token, OrganizationGUID: "org-" + token,
			AppName: name, SpaceName: "dev", OrganizationName: "acme", HostIP: "10.0.16.5", HostGUID: "cell-guid",
		}
	}
	epA, epB := endpoint("frontend", ipA), endpoint("backend", ipB)

	sender, err := metrics.NewSender(nil, "iptables-logger", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logger, logs := logtest.NewCapture(t, "cfnetworking.iptables-logger")
	go func() {
		done <- Run(ctx, logger, cfg, Options{Sender: sender, FlowNamespace: cell.NS})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	for end := time.Now().Add(10 * time.Second); len(logs.Find("cfnetworking.iptables-logger.flow-logger.listening")) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("flow logger not listening after 10 s; log: %v", logs.Messages())
		}
	}
	for _, key := range []string{"net.netfilter.nf_conntrack_acct", "net.netfilter.nf_conntrack_timestamp"} {
		if got := strings.TrimSpace(cell.Run(t, "sysctl", "-n", key)); got != "1" {
			t.Errorf("%s = %s in the cell, want 1 (set by the logger)", key, got)
		}
	}

	// The allowed connection: B serves, A sends a request, B answers, both
	// close.
	var ln net.Listener
	if err := appB.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", net.JoinHostPort(ipB, fmt.Sprint(allowedPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	served := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			served <- err
			return
		}
		defer c.Close()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			served <- err
			return
		}
		_, err = c.Write([]byte(strings.Repeat("pong ", 200)))
		served <- err
	}()
	var srcPort int
	if err := appA.Do(func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ipB, fmt.Sprint(allowedPort)), 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		srcPort = c.LocalAddr().(*net.TCPAddr).Port
		if _, err := c.Write([]byte("ping ")); err != nil {
			return err
		}
		_, err = io.ReadAll(c)
		return err
	}); err != nil {
		t.Fatalf("allowed connection: %v", err)
	}
	if err := <-served; err != nil {
		t.Fatalf("server: %v", err)
	}

	// The denied connection: nothing gets through, the SYN is logged.
	_ = appA.Do(func() error {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort(ipB, fmt.Sprint(deniedPort)), 300*time.Millisecond); err == nil {
			c.Close()
		}
		return nil
	})

	reap := top.reaper(t)
	var allowed, denied *decodedFlow
	deadline := time.Now().Add(30 * time.Second)
	for allowed == nil || denied == nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(cfg.OutputLogFile)
			t.Fatalf("no flow records (allowed %v, denied %v) after 30 s; output:\n%s", allowed != nil, denied != nil, b)
		}
		time.Sleep(200 * time.Millisecond)
		reap()
		b, err := os.ReadFile(cfg.OutputLogFile)
		if err != nil {
			t.Fatal(err)
		}
		var allowedCount int
		for l := range strings.Lines(string(b)) {
			var f decodedFlow
			if err := json.Unmarshal([]byte(l), &f); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
			f.raw = l
			switch {
			case f.Message == "cfnetworking.iptables.flow-allowed" && f.Data.Flow.DstPort == allowedPort:
				allowed = &f
				allowedCount++
			case f.Message == "cfnetworking.iptables.flow-denied" && f.Data.Flow.DstPort == deniedPort && denied == nil:
				denied = &f
			}
		}
		if allowedCount > 1 {
			t.Fatalf("%d records of the one allowed connection:\n%s", allowedCount, b)
		}
	}

	t.Logf("records:\n%s%s", allowed.raw, denied.raw)
	a := allowed.Data.Flow
	if a.SrcBytes == 0 || a.DstBytes == 0 || a.SrcPackets == 0 || a.DstPackets == 0 {
		t.Errorf("allowed flow counts %+v, want bytes and packets both ways", a)
	}
	// B sent 1,000 bytes of payload: more than that in IP packets.
	if a.DstBytes < 1000 || a.SrcBytes >= a.DstBytes {
		t.Errorf("allowed flow src_bytes %d, dst_bytes %d: want the answer's 1000 bytes on the destination side", a.SrcBytes, a.DstBytes)
	}
	wantA := Flow{Verdict: VerdictAllowed, SrcIP: ipA, DstIP: ipB, SrcPort: srcPort, DstPort: allowedPort, Protocol: "TCP",
		SrcPackets: a.SrcPackets, SrcBytes: a.SrcBytes, DstPackets: a.DstPackets, DstBytes: a.DstBytes, DurationMS: a.DurationMS}
	if diff := cmp.Diff(wantA, a); diff != "" {
		t.Errorf("allowed flow (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&epA, allowed.Data.Source); diff != "" {
		t.Errorf("allowed source (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&epB, allowed.Data.Destination); diff != "" {
		t.Errorf("allowed destination (-want +got):\n%s", diff)
	}

	d := denied.Data.Flow
	wantD := Flow{Verdict: VerdictDenied, SrcIP: ipA, DstIP: ipB, SrcPort: d.SrcPort, DstPort: deniedPort, Protocol: "TCP",
		SrcPackets: 1, SrcBytes: 60}
	if diff := cmp.Diff(wantD, d); diff != "" {
		t.Errorf("denied flow (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&epA, denied.Data.Source); diff != "" {
		t.Errorf("denied source (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&epB, denied.Data.Destination); diff != "" {
		t.Errorf("denied destination (-want +got):\n%s", diff)
	}
	for _, f := range []*decodedFlow{allowed, denied} {
		at, err := time.Parse(time.RFC3339Nano, f.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(AppendFlow(nil, at, TimestampRFC3339, f.Data.Flow, *f.Data.Source, *f.Data.Destination)); f.raw != want {
			t.Errorf("line:\n%s\nwant:\n%s", f.raw, want)
		}
	}
	// The counters reach the metrics path once the records are written.
	for _, name := range []string{MetricFlowsAllowed, MetricFlowsDenied} {
		var n uint64
		for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if n, _ = sender.Registry().Counter(name); n > 0 {
				break
			}
		}
		if n == 0 {
			t.Errorf("counter %s = 0", name)
		}
	}
}

// flowTopology is a "cell" namespace routing between two "container"
// namespaces, A and B, each behind a veth whose cell end is named like a
// container's (s-…).
type flowTopology struct {
	cell, appA, appB *netnstest.NS
	ipA, ipB         string
}

// newFlowTopology makes the namespaces; the cell's forward chain drops
// (and logs with a DENY_C2C_<token> prefix) TCP to deniedPort.
func newFlowTopology(tb testing.TB, token string, deniedPort int) flowTopology {
	tb.Helper()
	top := flowTopology{cell: netnstest.New(tb, "flc"), appA: netnstest.New(tb, "fla"), appB: netnstest.New(tb, "flb")}
	subA, subB := 1+randomInt(tb, 127), 128+randomInt(tb, 127)
	cellA, cellB := fmt.Sprintf("10.255.%d.1", subA), fmt.Sprintf("10.255.%d.1", subB)
	top.ipA, top.ipB = fmt.Sprintf("10.255.%d.2", subA), fmt.Sprintf("10.255.%d.2", subB)
	netnstest.Veth(tb, top.cell, netnstest.UniqueName("s-"), cellA+"/24", top.appA, netnstest.UniqueName("c"), top.ipA+"/24")
	netnstest.Veth(tb, top.cell, netnstest.UniqueName("s-"), cellB+"/24", top.appB, netnstest.UniqueName("c"), top.ipB+"/24")
	top.appA.Run(tb, "ip", "route", "add", "default", "via", cellA)
	top.appB.Run(tb, "ip", "route", "add", "default", "via", cellB)
	top.cell.Run(tb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Closed connections end in TIME_WAIT for 120 s before conntrack
	// destroys them; the test's cell waits 1 s.
	top.cell.Run(tb, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")
	// The cell's forward chain as the agent leaves it: established
	// traffic passes (this conntrack match is also what makes the kernel
	// track connections in the namespace), the denied port is logged and
	// dropped, the rest passes.
	top.cell.Run(tb, "iptables", "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	top.cell.Run(tb, "iptables", "-w", "-A", "FORWARD", "-p", "tcp", "--dport", fmt.Sprint(deniedPort), "-j", "LOG", "--log-prefix", "DENY_C2C_"+token+" ")
	top.cell.Run(tb, "iptables", "-w", "-A", "FORWARD", "-p", "tcp", "--dport", fmt.Sprint(deniedPort), "-j", "DROP")
	return top
}

// reaper dumps the cell's conntrack table: the kernel reaps an expired
// entry (and so reports its DESTROY) when its garbage collector gets to
// it, which may take a minute on an idle host, or when a dump walks past
// it.
func (top flowTopology) reaper(tb testing.TB) func() {
	tb.Helper()
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(top.cell.Handle(tb))})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ct.Close() })
	return func() {
		if _, err := ct.Dump(nil); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkFlowLoggerAt1000ConnectionsPerSecond is the measured run: the
// built iptables-logger, flow logs on, runs inside a cell namespace while a
// client in container A opens 1,000 TCP connections a second for 10 s to a
// server in container B (each sends 5 bytes, gets 100 back and closes).
// It reports the logger process's CPU (user+system ticks in
// /proc/<pid>/stat) from the start of the load until every connection's
// record is written, per connection and as a share of one core at 1,000
// connections a second. Run alone, with -benchtime 1x.
func BenchmarkFlowLoggerAt1000ConnectionsPerSecond(b *testing.B) {
	requireKernelLogging(b)
	const rate, seconds = 1000, 10
	token := netnstest.UniqueName("")
	port := 20000 + randomInt(b, 20000)
	top := newFlowTopology(b, token, port+1)

	dir := b.TempDir()
	bin := filepath.Join(dir, "iptables-logger")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/iptables-logger").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	cfg := kmsgConfig(b)
	cfg.EnableFlowLogs, cfg.FlowLogsPerSec = true, 1_000_000
	store := metadata.New(cfg.ContainerMetadataFile)
	for i, ip := range []string{top.ipA, top.ipB} {
		if err := store.Add(context.Background(), fmt.Sprintf("h-%d-%s", i, token), ip, map[string]any{"app_id": fmt.Sprintf("app-%d", i)}); err != nil {
			b.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "iptables-logger.json")
	data, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, data, 0o600); err != nil {
		b.Fatal(err)
	}
	pid := top.cell.Start(b, bin, "-config-file", cfgPath)
	for end := time.Now().Add(10 * time.Second); strings.TrimSpace(top.cell.Run(b, "sysctl", "-n", "net.netfilter.nf_conntrack_acct")) != "1"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatal("the logger did not turn on conntrack accounting")
		}
	}
	time.Sleep(500 * time.Millisecond) // listening

	var ln net.Listener
	if err := top.appB.Do(func() error {
		ln, err = net.Listen("tcp", net.JoinHostPort(top.ipB, fmt.Sprint(port)))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	answer := []byte(strings.Repeat("x", 100))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 5)
				if _, err := io.ReadFull(c, buf); err == nil {
					_, _ = c.Write(answer)
				}
			}()
		}
	}()

	reap := top.reaper(b)
	records := func() int {
		f, err := os.ReadFile(cfg.OutputLogFile)
		if err != nil {
			b.Fatal(err)
		}
		return strings.Count(string(f), `"message":"cfnetworking.iptables.flow-allowed"`)
	}
	before := cpuTicks(b, pid)
	b.ResetTimer()
	start := time.Now()
	var made int
	if err := top.appA.Do(func() error {
		buf := make([]byte, 100)
		for i := range rate * seconds {
			if d := time.Until(start.Add(time.Duration(i) * time.Second / rate)); d > 0 {
				time.Sleep(d)
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort(top.ipB, fmt.Sprint(port)), time.Second)
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("ping "))
			if err == nil {
				_, err = io.ReadFull(c, buf)
			}
			c.Close()
			if err != nil {
				return err
			}
			made++
		}
		return nil
	}); err != nil {
		b.Fatalf("after %d connections: %v", made, err)
	}
	loadTime := time.Since(start)
	for end := time.Now().Add(60 * time.Second); records() < made; time.Sleep(500 * time.Millisecond) {
		if time.Now().After(end) {
			b.Fatalf("%d records of %d connections after 60 s", records(), made)
		}
		reap()
	}
	b.StopTimer()
	cpu := float64(cpuTicks(b, pid)-before) / clockTicks
	b.ReportMetric(float64(made)/loadTime.Seconds(), "conn/s")
	b.ReportMetric(float64(records()), "records")
	b.ReportMetric(cpu/float64(made)*1e6, "µs-cpu/conn")
	b.ReportMetric(cpu/float64(made)*rate*100, "%core@1k/s")
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// Linux for every architecture Go supports here).
const clockTicks = 100

// cpuTicks is a process's user and system time, in ticks.
func cpuTicks(b *testing.B, pid int) int64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	var ticks int64
	for _, v := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		ticks += n
	}
	return ticks
}
