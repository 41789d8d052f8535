package iptableslogger

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// allowLogInNamespaces makes LOG rules in non-initial namespaces print, for
// the duration of the test (shared with other packages' tests).
func allowLogInNamespaces(t testing.TB) {
	t.Helper()
	netnstest.LogAllNetns(t)
}

// requireKernelLogging skips (through testtier) without root or iptables,
// and makes LOG rules in the test's namespaces print.
func requireKernelLogging(t testing.TB) {
	t.Helper()
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("iptables"); err != nil {
		testtier.Unavailable(t, "no iptables binary (scripts/test installs Debian's iptables)", netnstest.EnvRequireRoot)
	}
	allowLogInNamespaces(t)
}

// kmsgConfig is a config reading /dev/kmsg, with the store and output in a
// temporary directory.
func kmsgConfig(t testing.TB) Config {
	dir := t.TempDir()
	return Config{
		KernelLogFile:         "/dev/kmsg",
		ContainerMetadataFile: filepath.Join(dir, "store.json"),
		OutputLogFile:         filepath.Join(dir, "iptables.log"),
		MetronAddress:         "127.0.0.1:3457",
		HostIP:                "10.0.16.5",
		HostGUID:              "cell-guid",
		LogTimestampFormat:    "rfc3339",
	}
}

func randomInt(t testing.TB, n int64) int {
	t.Helper()
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		t.Fatal(err)
	}
	return int(v.Int64())
}

// decodedEvent is an output line read back.
type decodedEvent struct {
	Timestamp string `json:"timestamp"`
	Level     string `json:"level"`
	Source    string `json:"source"`
	Message   string `json:"message"`
	Data      struct {
		Packet      Packet     `json:"packet"`
		Source      *Container `json:"source"`
		Destination *Container `json:"destination"`
	} `json:"data"`
	raw string
}

// TestKmsgPrivileged has the kernel log real packets through LOG rules in
// namespaces the test creates — a "cell" and a "container" joined by a veth
// whose cell end is named like a container's (s-…) — and checks the logger
// reading /dev/kmsg writes the events.
func TestKmsgPrivileged(t *testing.T) {
	requireKernelLogging(t)

	cell := netnstest.New(t, "ilc")
	app := netnstest.New(t, "ila")
	hostVeth, appVeth := netnstest.UniqueName("s-"), netnstest.UniqueName("c")
	subnet := 1 + randomInt(t, 254)
	cellIP, appIP := fmt.Sprintf("10.255.%d.1", subnet), fmt.Sprintf("10.255.%d.2", subnet)
	netnstest.Veth(t, cell, hostVeth, cellIP+"/24", app, appVeth, appIP+"/24")

	token := netnstest.UniqueName("") // 6 hex digits
	port := 20000 + randomInt(t, 20000)
	ports := fmt.Sprint(port)
	// Ingress: leaving the cell through the container's veth, marked first
	// (mangle runs before filter), accepted.
	cell.Run(t, "iptables", "-w", "-t", "mangle", "-A", "OUTPUT", "-o", hostVeth, "-j", "MARK", "--set-mark", "0x5")
	cell.Run(t, "iptables", "-w", "-A", "OUTPUT", "-o", hostVeth, "-p", "tcp", "--dport", ports, "-j", "LOG", "--log-prefix", "OK_0005_"+token+" ")
	// Egress: leaving the container, denied.
	app.Run(t, "iptables", "-w", "-A", "OUTPUT", "-p", "tcp", "--dport", ports, "-j", "LOG", "--log-prefix", "DENY_"+token+" ")

	cfg := kmsgConfig(t)
	handle := "container-" + token
	if err := metadata.New(cfg.ContainerMetadataFile).Add(context.Background(), handle, appIP, map[string]any{
		"app_id": "app-" + token, "space_id": "space-" + token, "org_id": "org-" + token,
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, logtest.New(t), cfg, Options{Sender: newSender(t)}) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	connect := func(ns *netnstest.NS, ip string) {
		_ = ns.Do(func() error {
			// Nothing listens: the SYN is logged and answered with a reset.
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, ports), 200*time.Millisecond); err == nil {
				c.Close()
			}
			return nil
		})
	}
	var ingress, egress *decodedEvent
	deadline := time.Now().Add(15 * time.Second)
	for ingress == nil || egress == nil {
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(cfg.OutputLogFile)
			t.Fatalf("no events for port %d (ingress %v, egress %v); output:\n%s", port, ingress != nil, egress != nil, b)
		}
		connect(cell, appIP)
		connect(app, cellIP)
		time.Sleep(50 * time.Millisecond)
		b, err := os.ReadFile(cfg.OutputLogFile)
		if err != nil {
			t.Fatal(err)
		}
		for l := range strings.Lines(string(b)) {
			var e decodedEvent
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("output line %q: %v", l, err)
			}
			e.raw = l
			if e.Data.Packet.DstPort != port {
				continue // another test's or the host's packets
			}
			switch e.Message {
			case "cfnetworking.iptables.ingress-allowed":
				ingress = &e
			case "cfnetworking.iptables.egress-denied":
				egress = &e
			}
		}
	}

	container := &Container{
		ContainerID: handle, AppGUID: "app-" + token, SpaceGUID: "space-" + token,
		OrganizationGUID: "org-" + token, HostIP: "10.0.16.5", HostGUID: "cell-guid",
	}
	ignoreSrcPort := cmpopts.IgnoreFields(Packet{}, "SrcPort")
	wantIngress := Packet{Direction: Ingress, Allowed: true, SrcIP: cellIP, DstIP: appIP, DstPort: port, Protocol: "TCP", Mark: "0x5"}
	if diff := cmp.Diff(wantIngress, ingress.Data.Packet, ignoreSrcPort); diff != "" {
		t.Errorf("ingress packet (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(container, ingress.Data.Destination); diff != "" || ingress.Data.Source != nil {
		t.Errorf("ingress destination (-want +got):\n%s", diff)
	}
	wantEgress := Packet{Direction: Egress, SrcIP: appIP, DstIP: cellIP, DstPort: port, Protocol: "TCP"}
	if diff := cmp.Diff(wantEgress, egress.Data.Packet, ignoreSrcPort); diff != "" {
		t.Errorf("egress packet (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(container, egress.Data.Source); diff != "" || egress.Data.Destination != nil {
		t.Errorf("egress source (-want +got):\n%s", diff)
	}
	// Byte for byte what the encoder (checked against lager) writes.
	for _, e := range []*decodedEvent{ingress, egress} {
		if e.Data.Packet.SrcPort <= 0 {
			t.Errorf("src_port = %d", e.Data.Packet.SrcPort)
		}
		at, err := time.Parse(time.RFC3339Nano, e.Timestamp)
		if err != nil {
			t.Fatal(err)
		}
		if want := string(AppendEvent(nil, at, TimestampRFC3339, e.Data.Packet, *container)); e.raw != want {
			t.Errorf("line:\n%s\nwant:\n%s", e.raw, want)
		}
	}
}
