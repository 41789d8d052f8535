package rules

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestRulesAreCanonical applies every kind of rule this package renders and
// checks iptables-save prints each back byte for byte, on both backends.
// That is what lets planners diff desired rules against the kernel.
func TestRulesAreCanonical(t *testing.T) {
	netnstest.RequireRoot(t)
	c := ip("10.255.17.5")
	host := ip("10.244.0.3")
	long := "bfce786c-ab07-40ad-79f9-8f21-0123456789ab"
	noMasq := netip.MustParsePrefix("10.255.0.0/16")
	nets := []IPRange{{ip("10.0.0.1"), ip("10.0.0.9")}, {ip("0.0.0.0"), ip("255.255.255.255")}}
	var filterRules []iptables.Rule
	filterRules = append(filterRules,
		Reject(), Accept(), RelatedEstablished(), InvalidDrop(),
		DestinationReject(netip.MustParsePrefix("169.254.0.0/16")),
		SourceJump(c, "target"), SourceOutJump(c, "eth0", "target"),
		AllowDestinationPort("tcp", ip("169.254.0.2"), 53), AllowDestinationPort("udp", ip("169.254.0.2"), 53),
		AllowDestinationPort("tcp", host, 8080),
		LimitedLog(netip.Addr{}, 1, "DENY_"+long), LimitedLog(c, 3, "DENY_C2C_"+long), LimitedLog(c, 1000, "x"),
		OverlayAllowEgress("silk-vtep", c), OverlayRelatedEstablished(c),
		OverlayTagAccept(c, "ffff0000"), OverlayTagAccept(c, "0000ffaa"), OverlayReject(c),
		LogNonUDPNew("OK_"+long), LogUDPLimited(100, "OK_"+long), LogUDPLimited(7, "OK_x"),
		ConnRateLimit(100, 1000, long, 10000, "REJECT"), ConnRateLimit(3, 7, "h", 3000, "target"),
		Jump("target"),
	)
	filterRules = append(filterRules, ConvertNetOut([]NetOutRule{
		{Protocol: TCP, Networks: nets, Ports: []PortRange{{80, 80}, {1, 65535}}},
		{Protocol: UDP, Networks: nets[:1], Ports: []PortRange{{53, 53}}, Log: true},
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{Type: 8, Code: 0}},
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{Type: 3, Code: 255}},
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{Type: 255, Code: 255}, Log: true},
		{Protocol: ICMP, Networks: nets[1:], ICMP: &ICMPInfo{Type: 255, Code: 0}},
		{Protocol: All, Networks: nets},
	}, "target", false, nil)...)
	natRules := []iptables.Rule{
		Jump("target"),
		PortForward(host, 60000, c, 8080),
		Masquerade(c, noMasq, "silk-vtep"),
		Masquerade(c, netip.Prefix{}, "silk-vtep"),
	}
	mangleRules := []iptables.Rule{
		Jump("target"),
		IngressMark(host, "eth0", 60000, "ffff0000"),
	}

	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "can")
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: t.TempDir() + "/lock"})
			txs := map[string][]iptables.Rule{iptables.Filter: filterRules, iptables.NAT: natRules, iptables.Mangle: mangleRules}
			for table, want := range txs {
				tx := iptables.NewTx(table).DeclareChain("target").DeclareChain("t").Append("t", want...)
				var st *iptables.State
				if err := ns.Do(func() (err error) {
					if err = d.Apply(t.Context(), tx); err != nil {
						return err
					}
					st, err = d.Save(t.Context(), table)
					return err
				}); err != nil {
					t.Fatalf("%s: %v", table, err)
				}
				if diff := cmp.Diff(want, st.Rules("t")); diff != "" {
					t.Errorf("%s: iptables-save differs from rendered (-rendered +saved):\n%s", table, diff)
				}
			}
		})
	}
}

// TestRulesAreCanonicalIPv6 is TestRulesAreCanonical for the IPv6 twins
// cni-wrapper-plugin and the agent write with ip6tables.
func TestRulesAreCanonicalIPv6(t *testing.T) {
	netnstest.RequireRoot(t)
	c := ip("fd73:696c:6b::aff:1105")
	host := ip("2001:db8::3")
	long := "bfce786c-ab07-40ad-79f9-8f21-0123456789ab"
	overlay := netip.MustParsePrefix("fd73:696c:6b::/96")
	nets := []IPRange{{ip("2001:db8::1"), ip("2001:db8::9")}, {ip("::"), ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, {ip("10.0.0.1"), ip("10.0.0.2")}}
	chain := NetOutChain{Handle: long, Workload: "app", Family: iptables.IPv6, DualStack: true, ASGLogging: true, DeniedLogsPerSec: 2,
		Deny: DenyNetworks{Always: []netip.Prefix{netip.MustParsePrefix("fd00::/8"), netip.MustParsePrefix("10.0.0.0/8")}},
		Conn: OutConn{Limit: true, Burst: 1000, RatePerSec: 100}}
	var filterRules []iptables.Rule
	filterRules = append(filterRules,
		Reject6(), DestinationReject(netip.MustParsePrefix("fd00::/8")),
		SourceJump(c, "target"), SourceOutJump(c, "eth0", "target"),
		AllowDestinationPort("tcp", host, 8080),
		LimitedLog(c, 3, "DENY_C2C_"+long),
		OverlayAllowEgress("silk-vtep", c), OverlayRelatedEstablished(c),
		OverlayTagAccept(c, "ffff0000"), OverlayReject(c),
		ConnRateLimitFamily(iptables.IPv6, 100, 1000, long, 10000, "REJECT"),
	)
	filterRules = append(filterRules, NeighborDiscovery()...)
	filterRules = append(filterRules, chain.Rules([]NetOutRule{
		{Protocol: TCP, Networks: nets, Ports: []PortRange{{80, 80}, {1, 65535}}},
		{Protocol: UDP, Networks: nets[:1], Ports: []PortRange{{53, 53}}, Log: true},
		{Protocol: ICMPv6, Networks: nets[:1], ICMP: &ICMPInfo{Type: 128, Code: 0}},
		{Protocol: ICMPv6, Networks: nets[:1], ICMP: &ICMPInfo{Type: 1, Code: 255}},
		{Protocol: ICMPv6, Networks: nets[1:2], ICMP: &ICMPInfo{Type: 255, Code: 255}, Log: true},
		{Protocol: ICMP, Networks: nets, ICMP: &ICMPInfo{Type: 8, Code: 0}},
		{Protocol: All, Networks: nets},
	}, nil)...)
	natRules := []iptables.Rule{
		PortForward(host, 60000, c, 8080),
		Masquerade(c, overlay, "silk-vtep"),
	}
	mangleRules := []iptables.Rule{IngressMark(host, "eth0", 60000, "ffff0000")}

	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "can6")
			d := iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: t.TempDir() + "/lock"})
			txs := map[string][]iptables.Rule{iptables.Filter: filterRules, iptables.NAT: natRules, iptables.Mangle: mangleRules}
			for table, want := range txs {
				tx := iptables.NewTx(table).DeclareChain("target").DeclareChain(chain.LogChain()).DeclareChain("t").Append("t", want...)
				var st *iptables.State
				if err := ns.Do(func() (err error) {
					if err = d.Apply(t.Context(), tx); err != nil {
						return err
					}
					st, err = d.Save(t.Context(), table)
					return err
				}); err != nil {
					t.Fatalf("%s: %v", table, err)
				}
				if diff := cmp.Diff(want, st.Rules("t")); diff != "" {
					t.Errorf("%s: ip6tables-save differs from rendered (-rendered +saved):\n%s", table, diff)
				}
			}
		})
	}
}
