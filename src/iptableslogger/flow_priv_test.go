package iptableslogger

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
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

	cell := netnstest.New(t, "flc")
	appA := netnstest.New(t, "fla")
	appB := netnstest.New(t, "flb")
	subA, subB := 1+randomInt(t, 127), 128+randomInt(t, 127)
	cellA, ipA := fmt.Sprintf("10.255.%d.1", subA), fmt.Sprintf("10.255.%d.2", subA)
	cellB, ipB := fmt.Sprintf("10.255.%d.1", subB), fmt.Sprintf("10.255.%d.2", subB)
	netnstest.Veth(t, cell, netnstest.UniqueName("s-"), cellA+"/24", appA, netnstest.UniqueName("c"), ipA+"/24")
	netnstest.Veth(t, cell, netnstest.UniqueName("s-"), cellB+"/24", appB, netnstest.UniqueName("c"), ipB+"/24")
	appA.Run(t, "ip", "route", "add", "default", "via", cellA)
	appB.Run(t, "ip", "route", "add", "default", "via", cellB)
	cell.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Closed connections end in TIME_WAIT for 120 s before conntrack
	// destroys them; the test's cell waits 1 s.
	cell.Run(t, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1")

	token := netnstest.UniqueName("")
	allowedPort := 20000 + randomInt(t, 20000)
	deniedPort := allowedPort + 1
	// The cell's forward chain as the agent leaves it: established
	// traffic passes (this conntrack match is also what makes the kernel
	// track connections in the namespace), the denied port is logged and
	// dropped, the rest passes.
	cell.Run(t, "iptables", "-w", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	cell.Run(t, "iptables", "-w", "-A", "FORWARD", "-p", "tcp", "--dport", fmt.Sprint(deniedPort), "-j", "LOG", "--log-prefix", "DENY_C2C_"+token+" ")
	cell.Run(t, "iptables", "-w", "-A", "FORWARD", "-p", "tcp", "--dport", fmt.Sprint(deniedPort), "-j", "DROP")

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

	// The kernel reaps an expired entry (and so reports its DESTROY) when
	// its garbage collector gets to it, which may take a minute on an idle
	// host, or when a dump walks past it: the test dumps the cell's table.
	ct, err := conntrack.Dial(&netlink.Config{NetNS: int(cell.Handle(t))})
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	var allowed, denied *decodedFlow
	deadline := time.Now().Add(30 * time.Second)
	for allowed == nil || denied == nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(cfg.OutputLogFile)
			t.Fatalf("no flow records (allowed %v, denied %v) after 30 s; output:\n%s", allowed != nil, denied != nil, b)
		}
		time.Sleep(200 * time.Millisecond)
		if _, err := ct.Dump(nil); err != nil {
			t.Fatal(err)
		}
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

