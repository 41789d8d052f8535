package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestCellMetricsPrivileged runs netmon in a "cell" namespace holding lo
// and a veth named silk-vtep (its peer in a second namespace) plus a few
// iptables rules, and checks every metric against the kernel.
func TestCellMetricsPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	cell := netnstest.New(t, "nmon")
	peer := netnstest.New(t, "nmpeer")
	for _, ns := range []*netnstest.NS{cell, peer} {
		// No IPv6 autoconfiguration chatter moving the counters.
		for _, key := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			_ = ns.Command("sysctl", "-qw", key+"=1").Run()
		}
	}
	// Created inside the namespaces: a silk-vtep never appears in the
	// test's own namespace, where a real one may live.
	cell.Run(t, "ip", "link", "add", "silk-vtep", "type", "veth", "peer", "name", "nmpeer0", "netns", peer.Name)
	cell.Run(t, "ip", "addr", "add", "10.255.7.1/24", "dev", "silk-vtep")
	cell.Run(t, "ip", "link", "set", "silk-vtep", "up")
	peer.Run(t, "ip", "addr", "add", "10.255.7.2/24", "dev", "nmpeer0")
	peer.Run(t, "ip", "link", "set", "nmpeer0", "up")
	// Some traffic out of (and ARP back into) silk-vtep.
	if err := cell.Do(func() error {
		// Unconnected, so the peer's port-unreachable replies do not
		// fail the next write.
		c, err := net.ListenPacket("udp4", "10.255.7.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(10, 255, 7, 2), Port: 9}
		for range 5 {
			if _, err := c.WriteTo(make([]byte, 100), to); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// filter: 3 policies + 1 chain + 2 rules; nat: 4 policies + 1 rule.
	cell.Run(t, "iptables", "-N", "netmon-test")
	cell.Run(t, "iptables", "-A", "netmon-test", "-s", "10.255.7.0/24", "-j", "ACCEPT")
	cell.Run(t, "iptables", "-A", "FORWARD", "-j", "netmon-test")
	cell.Run(t, "iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "10.255.7.0/24", "!", "-o", "silk-vtep", "-j", "MASQUERADE")
	const wantRules = 11
	upstreamCount := 0
	for _, table := range []string{"filter", "nat"} {
		out := cell.Run(t, "iptables", "-S", "-t", table)
		upstreamCount += len(strings.Split(strings.TrimSpace(out), "\n"))
	}
	if upstreamCount != wantRules {
		t.Fatalf("iptables -S lines = %d, want %d", upstreamCount, wantRules)
	}

	// metron listens inside the cell, on the cell's loopback.
	var metron net.PacketConn
	if err := cell.Do(func() (err error) {
		metron, err = net.ListenPacket("udp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer metron.Close()

	stats := []struct{ metric, file string }{
		{"OverlayTxBytes", "tx_bytes"}, {"OverlayRxBytes", "rx_bytes"},
		{"OverlayRxDropped", "rx_dropped"}, {"OverlayTxDropped", "tx_dropped"},
	}
	// `ip netns exec` mounts the namespace's own sysfs, so these are the
	// files netmon reads.
	readStat := func(file string) float64 {
		t.Helper()
		out := cell.Run(t, "cat", "/sys/class/net/silk-vtep/statistics/"+file)
		v, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	before := map[string]float64{}
	for _, s := range stats {
		before[s.metric] = readStat(s.file)
	}
	if before["OverlayTxBytes"] == 0 {
		t.Fatal("no traffic counted on silk-vtep")
	}

	p := start(t, maintest.Wrap("ip", "netns", "exec", cell.Name, os.Args[0],
		"-config-file", writeConfig(t, metron.LocalAddr().String(), "silk-vtep")))
	got := readMetrics(t, metron, "NetInterfaceCount", "IPTablesRuleCount",
		"OverlayTxBytes", "OverlayRxBytes", "OverlayRxDropped", "OverlayTxDropped")
	value := func(name string) float64 {
		env := got[name]
		if env.GetOrigin() != "netmon" || env.GetValueMetric().GetUnit() != "Metric" {
			t.Errorf("%s envelope = %v", name, env)
		}
		return env.GetValueMetric().GetValue()
	}
	if v := value("NetInterfaceCount"); v != 2 {
		t.Errorf("NetInterfaceCount = %v, want 2 (lo, silk-vtep)", v)
	}
	if v := value("IPTablesRuleCount"); v != wantRules {
		t.Errorf("IPTablesRuleCount = %v, want %d", v, wantRules)
	}
	for _, s := range stats {
		after := readStat(s.file)
		if v := value(s.metric); v < before[s.metric] || v > after {
			t.Errorf("%s = %v, want between %v and %v", s.metric, v, before[s.metric], after)
		}
	}
	if strings.Contains(p.stdout.String(), `"log_level":2`) {
		t.Errorf("errors logged:\n%s", p.stdout.String())
	}
	p.stop(t)
}
