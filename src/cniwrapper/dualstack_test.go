package cniwrapper

import (
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// dualStackNetOut mixes IPv4 and IPv6 destinations: tcp and all to both,
// icmp (IPv4 only) and icmpv6 (IPv6 only), and an IPv6 rule with no type.
var dualStackNetOut = []NetOutRule{
	{Protocol: 1, Networks: []IPRange{gardenRange("10.10.0.0", "10.10.255.255"), gardenRange("2001:db8::", "2001:db8::ffff")}, Ports: []PortRange{{Start: 443, End: 443}}},
	{Protocol: 2, Networks: []IPRange{gardenRange("2001:4860:4860::8888", "2001:4860:4860::8888")}, Ports: []PortRange{{Start: 53, End: 53}}, Log: true},
	{Protocol: 3, Networks: []IPRange{gardenRange("0.0.0.0", "255.255.255.255")}, ICMPs: &ICMPControl{Type: 8, Code: u8(0)}},
	{Protocol: 4, Networks: []IPRange{gardenRange("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, ICMPs: &ICMPControl{Type: 128, Code: u8(0)}},
	{Protocol: 4, Networks: []IPRange{gardenRange("2001:db8::1", "2001:db8::1")}},
	{Protocol: 0, Networks: []IPRange{gardenRange("192.168.1.1", "192.168.1.254"), gardenRange("fd00::", "fd00::ff")}},
}

func dualStack(c *Config) {
	c.IPv6OverlayNetwork = "fd73:696c:6b::/96"
	c.InstanceAddressIPv6 = "2001:db8:16::5"
	c.HostTCPServicesIPv6 = []string{"[2001:db8:16::5]:8080"}
	c.DenyNetworks = DenyNetworks{Always: []string{"169.254.169.254/32", "fd00:ec2::254/128"}, Running: []string{"2001:db8:ff::/48"}}
	c.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}}
	c.OutConn = OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}
}

// TestAddDualStackGolden renders ADD on a dual-stack cell: the IPv4 payload
// as on an IPv4-only cell, and its ip6tables twin for the container's
// derived IPv6 address (neighbour discovery accepted in input--H, IPv6
// host services, IPv6 deny networks, DNAT from the cell's IPv6 address,
// masquerade except to the IPv6 overlay), then garden's netOut rules split
// by destination family.
func TestAddDualStackGolden(t *testing.T) {
	cfg := baseConfig(t)
	dualStack(cfg)
	plan, err := PlanAdd(cfg, Container{Handle: "dual-1", IP: netip.MustParseAddr("10.255.17.5"), Workload: "app", Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	if plan.IPv6 == nil {
		t.Fatal("no IPv6 plan on a dual-stack cell")
	}
	var b strings.Builder
	for _, fam := range []struct {
		name string
		p    *AddPlan
	}{{"iptables", plan}, {"ip6tables", plan.IPv6}} {
		var warnings []string
		netOut := fam.p.NetOut(dualStackNetOut, func(s string) { warnings = append(warnings, s) })
		tables := iptablestest.New()
		if err := tables.Apply(t.Context(), fam.p.Filter, fam.p.NAT, fam.p.Mangle, netOut); err != nil {
			t.Fatal(err)
		}
		b.WriteString("# " + fam.name + ": resulting tables after ADD and the 405 netOut rules\n")
		b.WriteString(dumpAll(tables))
		for _, w := range warnings {
			b.WriteString("# warning: " + w + "\n")
		}
	}
	golden.Check(t, filepath.Join("testdata", "add-dual-stack.golden"), []byte(b.String()))

	// IPv4 only: no twin, and IPv6 deny networks are refused as before.
	cfg = baseConfig(t)
	if p, err := PlanAdd(cfg, Container{Handle: "h", IP: netip.MustParseAddr("10.255.17.5")}); err != nil || p.IPv6 != nil {
		t.Errorf("ipv4-only plan: %v %v", p.IPv6, err)
	}
	cfg.DenyNetworks.Always = []string{"fd00::/8"}
	if _, err := PlanAdd(cfg, Container{Handle: "h", IP: netip.MustParseAddr("10.255.17.5")}); err == nil ||
		err.Error() != "initialize net out: deny networks: invalid CIDR address: fd00::/8" {
		t.Errorf("ipv4-only cell with an IPv6 deny network: %v", err)
	}
}

func TestPlanAddRejectsBadIPv6Input(t *testing.T) {
	for _, tc := range []struct {
		change func(*Config)
		want   string
	}{
		{func(c *Config) { c.HostTCPServicesIPv6 = []string{"10.0.0.1:80"} }, `initialize net out: input rules: host tcp services ipv6: invalid IPv6 address in "10.0.0.1:80"`},
		{func(c *Config) { c.HostTCPServicesIPv6 = []string{"fd00::1"} }, "initialize net out: input rules: host tcp services ipv6: address fd00::1: too many colons in address"},
		{func(c *Config) { c.HostTCPServicesIPv6 = []string{"[fd00::1]:0"} }, `initialize net out: input rules: host tcp services ipv6: invalid port in "[fd00::1]:0"`},
		{func(c *Config) { c.InstanceAddressIPv6 = "10.0.16.5" }, "adding netin rule: invalid ip: 10.0.16.5"},
		{func(c *Config) { c.DenyNetworks.Always = []string{"fd00::/129"} }, "initialize net out: deny networks: invalid CIDR address: fd00::/129"},
	} {
		cfg := baseConfig(t)
		dualStack(cfg)
		tc.change(cfg)
		if _, err := PlanAdd(cfg, Container{Handle: "h", IP: netip.MustParseAddr("10.255.17.5")}); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
}

// TestAddDelDualStack runs ADD (the agent answering 405, so garden's rules
// apply) and DEL through the plugin on a dual-stack cell: both families'
// tables get the container's chains, and DEL leaves both as they were —
// also when the metadata store lost the container.
func TestAddDelDualStack(t *testing.T) {
	for _, storeKnows := range []bool{true, false} {
		h := newHarness(t)
		h.stdin["ipv6_overlay_network"] = "fd73:696c:6b::/96"
		h.stdin["instance_address_ipv6"] = "2001:db8:16::5"
		h.stdin["runtimeConfig"] = map[string]any{
			"portMappings": []any{map[string]any{"host_port": 61001, "container_port": 8080}},
			"netOutRules": []any{
				map[string]any{"protocol": 1, "networks": []any{map[string]any{"start": "10.0.0.1", "end": "10.0.0.9"}, map[string]any{"start": "2001:db8::1", "end": "2001:db8::9"}}, "ports": []any{map[string]any{"start": 443, "end": 443}}},
				map[string]any{"protocol": 4, "networks": []any{map[string]any{"start": "::", "end": "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}}, "icmps": map[string]any{"type": 128, "code": 0}},
			},
		}
		h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
		empty6 := dumpAll(h.tables6)
		if _, err := h.plugin.Add(t.Context(), h.args(t)); err != nil {
			t.Fatalf("%v\nstderr: %s", err, h.stderr)
		}
		if h.stderr.Len() != 0 {
			t.Errorf("warnings on a dual-stack ADD: %s", h.stderr)
		}
		ch := ChainsFor("container-1")
		st6, _ := h.tables6.Save(t.Context(), iptables.Filter)
		want6 := []iptables.Rule{
			"-m state --state RELATED,ESTABLISHED -j ACCEPT",
			"-p tcp -m state --state INVALID -j DROP",
			"-p ipv6-icmp -m iprange --dst-range ::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff -m icmp6 --icmpv6-type 128/0 -j ACCEPT",
			"-p tcp -m iprange --dst-range 2001:db8::1-2001:db8::9 -m tcp --dport 443 -j ACCEPT",
			"-j REJECT --reject-with icmp6-port-unreachable",
		}
		if diff := cmp.Diff(want6, st6.Rules(ch.NetOut)); diff != "" {
			t.Errorf("ip6tables netout (-want +got):\n%s", diff)
		}
		nat6, _ := h.tables6.Save(t.Context(), iptables.NAT)
		if !nat6.Contains(ch.NetIn, "-d 2001:db8:16::5/128 -p tcp -m tcp --dport 61001 -j DNAT --to-destination [fd73:696c:6b::aff:1105]:8080") ||
			!nat6.Contains("POSTROUTING", "-s fd73:696c:6b::aff:1105/128 ! -d fd73:696c:6b::/96 ! -o silk-vtep -j MASQUERADE") {
			t.Errorf("ip6tables nat:\n%s", h.tables6.Dump(iptables.NAT))
		}
		st4, _ := h.tables.Save(t.Context(), iptables.Filter)
		for _, r := range st4.Rules(ch.NetOut) {
			if strings.Contains(string(r), ":") && strings.Contains(string(r), "2001") {
				t.Errorf("IPv6 destination in the iptables chain: %s", r)
			}
		}
		if !storeKnows {
			if _, err := h.store().Delete(t.Context(), "container-1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.plugin.Del(t.Context(), h.args(t)); err != nil {
			t.Fatal(err)
		}
		if got := h.dump(); got != emptyTables {
			t.Errorf("store knows %v: DEL left iptables:\n%s", storeKnows, got)
		}
		if got := dumpAll(h.tables6); got != empty6 {
			t.Errorf("store knows %v: DEL left ip6tables:\n%s", storeKnows, got)
		}
	}
}

// TestAddNFTDualStackGolden is TestAddDualStackGolden in nftables mode: the
// container's chains are inet chains, so its IPv6 packets reach the same
// chains through the IPv6 dispatch maps; the chains gain the IPv6 rules
// (neighbour discovery, IPv6 host services, IPv6 masquerade, and the
// egress chain's IPv6 destination sets).
func TestAddNFTDualStackGolden(t *testing.T) {
	cfg := baseConfig(t)
	dualStack(cfg)
	plan, err := PlanAddNFT(cfg, Container{Handle: "dual-1", IP: netip.MustParseAddr("10.255.17.5"), Workload: "app", Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	f := nft.NewFake()
	if err := NFTAdd(t.Context(), f, plan); err != nil {
		t.Fatal(err)
	}
	rs, warnings := plan.NetOut(dualStackNetOut)
	if err := NFTSetNetOut(t.Context(), f, rs); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("# ADD: the container's chains\n" + plan.Objects.String())
	b.WriteString("# its entries in the dispatch maps\n" + plan.Dispatch.String())
	b.WriteString("# policy agent answered 405: garden netOutRules\n" + rs.String())
	for _, w := range warnings {
		b.WriteString("# warning: " + w + "\n")
	}
	golden.Check(t, filepath.Join("testdata", "nft-add-dual-stack.golden"), []byte(b.String()))
}

// TestDelNFTDualStack deletes a dual-stack container next to another one:
// its IPv6 dispatch entries go with the IPv4 ones, whether or not the
// metadata store still knew its IPv4 address.
func TestDelNFTDualStack(t *testing.T) {
	ctx := t.Context()
	cfg := baseConfig(t)
	dualStack(cfg)
	install := func(f *nft.Fake, handle, ip string, port int) {
		cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: port, ContainerPort: 8080}}
		plan, err := PlanAddNFT(cfg, Container{Handle: handle, IP: netip.MustParseAddr(ip), Workload: "app", Interfaces: []string{"eth0"}})
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := plan.NetOut(dualStackNetOut)
		if err := NFTAdd(ctx, f, plan); err != nil {
			t.Fatal(err)
		}
		if err := NFTSetNetOut(ctx, f, rs); err != nil {
			t.Fatal(err)
		}
	}
	want := nft.NewFake()
	install(want, "keep-me", "10.255.17.6", 61001)
	for _, ip := range []netip.Addr{netip.MustParseAddr("10.255.17.5"), {}} {
		f := nft.NewFake()
		install(f, "keep-me", "10.255.17.6", 61001)
		install(f, "delete-me", "10.255.17.5", 61002)
		if err := NFTDelDualStack(ctx, f, "delete-me", ip); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want.Ruleset().String(), f.Ruleset().String()); diff != "" {
			t.Errorf("after DEL (ip %v) (-want +got):\n%s", ip, diff)
		}
	}
}

// TestNFTAddDelDualStackThroughPlugin runs ADD and DEL through the plugin
// in nftables mode on a dual-stack cell: the IPv6 dispatch entries are
// installed, and DEL leaves the skeleton alone, as on an IPv4-only cell.
func TestNFTAddDelDualStackThroughPlugin(t *testing.T) {
	h, d := nftHarness(t)
	ctx := t.Context()
	h.stdin["ipv6_overlay_network"] = "fd73:696c:6b::/96"
	h.stdin["instance_address_ipv6"] = "2001:db8:16::5"
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	if _, err := h.plugin.Add(ctx, h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	st := readNFT(t, d)
	for set, key := range map[string]string{
		nft.MapInput6:        "fd73:696c:6b::aff:1105",
		nft.MapPortMappings6: "2001:db8:16::5 . 61001",
	} {
		if s := st.Sets[set]; s == nil || len(s.Elements) != 1 {
			t.Errorf("%s: %v", set, s)
		} else if _, ok := s.Elements[key]; !ok {
			t.Errorf("%s: %v, want key %s", set, s.Elements, key)
		}
	}
	if err := h.plugin.Del(ctx, h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	if diff := cmp.Diff(skeletonOnly(t), readNFT(t, d)); diff != "" {
		t.Errorf("DEL left (-skeleton +after):\n%s", diff)
	}
}
