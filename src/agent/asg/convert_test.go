package asg

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables/rules"
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func rng(a, b string) rules.IPRange { return rules.IPRange{Start: addr(a), End: addr(b)} }

func pr(a, b uint16) rules.PortRange { return rules.PortRange{Start: a, End: b} }

func TestParseDestination(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []rules.IPRange
	}{
		{"10.0.0.1", []rules.IPRange{rng("10.0.0.1", "10.0.0.1")}},
		{"10.0.0.0/8", []rules.IPRange{rng("10.0.0.0", "10.255.255.255")}},
		{"10.1.2.3/8", []rules.IPRange{rng("10.0.0.0", "10.255.255.255")}},
		{"0.0.0.0/0", []rules.IPRange{rng("0.0.0.0", "255.255.255.255")}},
		{"10.0.0.7/32", []rules.IPRange{rng("10.0.0.7", "10.0.0.7")}},
		{"10.0.0.1-10.0.0.9", []rules.IPRange{rng("10.0.0.1", "10.0.0.9")}},
		{"10.0.0.9-10.0.0.1", []rules.IPRange{rng("10.0.0.9", "10.0.0.1")}}, // kept: iptables accepts it
		{"010.000.0.01", []rules.IPRange{rng("10.0.0.1", "10.0.0.1")}},      // upstream drops leading zeros
		{"010.0.0.0/08", []rules.IPRange{rng("10.0.0.0", "10.255.255.255")}},
		{"1.2.3.4,5.6.7.8/31, 9.9.9.9 - 9.9.9.10", []rules.IPRange{
			rng("1.2.3.4", "1.2.3.4"), rng("5.6.7.8", "5.6.7.9"), rng("9.9.9.9", "9.9.9.10")}},
		// IPv6 (dual-stack ASGs).
		{"::1", []rules.IPRange{rng("::1", "::1")}},
		{"::/0", []rules.IPRange{rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}},
		{"2001:db8::5/32", []rules.IPRange{rng("2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")}},
		{"2001:db8::1 - 2001:db8::9,10.0.0.1", []rules.IPRange{rng("2001:db8::1", "2001:db8::9"), rng("10.0.0.1", "10.0.0.1")}},
	} {
		got, err := ParseDestination(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, bad := range []string{"", "10.0.0", "10.0.0.256", "10.0.0.1/33", "10.0.0.1/", "/8",
		"10.0.0.1-", "-10.0.0.1", "10.0.0.1-::1", "a.b.c.d", "10.0.0.1,", "+1.2.3.4", "10.0.0.1/-1", "1.2.3.4.5",
		"2001:db8::/129", "2001:db8::1-", "fe80::1%eth0", "::ffff:10.0.0.1", "2001:db8::1-10.0.0.1", "2001:db8:::1"} {
		if got, err := ParseDestination(bad); err == nil {
			t.Errorf("%q: parsed as %v, want an error", bad, got)
		}
	}
}

func TestParsePorts(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []rules.PortRange
	}{
		{"", nil},
		{"80", []rules.PortRange{pr(80, 80)}},
		{"80,443", []rules.PortRange{pr(80, 80), pr(443, 443)}},
		{"80, 443", []rules.PortRange{pr(80, 80), pr(443, 443)}}, // cf-networking-release#149
		{" 8000 - 9000 ,22", []rules.PortRange{pr(8000, 9000), pr(22, 22)}},
		{"1-65535", []rules.PortRange{pr(1, 65535)}},
		{"0", []rules.PortRange{pr(0, 0)}},
		{"http,80,1-2-3,70000,9000-8000,-1,443", []rules.PortRange{pr(80, 80), pr(443, 443)}},
	} {
		if diff := cmp.Diff(tc.want, ParsePorts(tc.in)); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestConvert(t *testing.T) {
	rs, err := ParseRules(`[
		{"protocol":"tcp","destination":"10.0.0.1","ports":"80, 443","log":true,"description":"web"},
		{"protocol":"icmp","destination":"10.0.0.2","type":-1,"code":-1},
		{"protocol":"icmp","destination":"10.0.0.3","type":8,"code":0},
		{"protocol":"icmp","destination":"10.0.0.4"},
		{"protocol":"all","destination":"0.0.0.0/0"},
		{"protocol":"icmpv6","destination":"::/0","type":128,"code":0},
		{"protocol":"icmpv6","destination":"2001:db8::1","type":-1,"code":-1},
		{"protocol":"icmpv6","destination":"2001:db8::2","ports":"80"},
		{"protocol":"sctp","destination":"10.0.0.5"}
	]`)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	got, err := Convert(rs, func(w string) { warnings = append(warnings, w) })
	if err != nil {
		t.Fatal(err)
	}
	one := func(s string) []rules.IPRange { return []rules.IPRange{rng(s, s)} }
	want := []rules.NetOutRule{
		{Protocol: rules.TCP, Networks: one("10.0.0.1"), Ports: []rules.PortRange{pr(80, 80), pr(443, 443)}, Log: true},
		{Protocol: rules.ICMP, Networks: one("10.0.0.2"), ICMP: &rules.ICMPInfo{Type: 255, Code: 255}},
		{Protocol: rules.ICMP, Networks: one("10.0.0.3"), ICMP: &rules.ICMPInfo{Type: 8, Code: 0}},
		{Protocol: rules.ICMP, Networks: one("10.0.0.4"), ICMP: &rules.ICMPInfo{}},
		{Protocol: rules.All, Networks: []rules.IPRange{rng("0.0.0.0", "255.255.255.255")}},
		{Protocol: rules.ICMPv6, Networks: []rules.IPRange{rng("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}, ICMP: &rules.ICMPInfo{Type: 128, Code: 0}},
		{Protocol: rules.ICMPv6, Networks: one("2001:db8::1"), ICMP: &rules.ICMPInfo{Type: 255, Code: 255}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(warnings) != 2 || !strings.HasPrefix(warnings[0], "ICMPv6 rule must not specify ports") || !strings.Contains(warnings[1], `"sctp"`) {
		t.Errorf("warnings %q, want icmpv6 with ports and sctp", warnings)
	}

	// One bad destination entry fails the whole list, whatever its protocol.
	rs, _ = ParseRules(`[{"protocol":"tcp","destination":"10.0.0.1","ports":"80"},{"protocol":"bogus","destination":"10.0.0.1,::1::2"}]`)
	if _, err := Convert(rs, nil); err == nil {
		t.Error("bad destination converted")
	}

	for _, s := range []string{"", "null", "[]"} {
		if rs, err := ParseRules(s); err != nil || len(rs) != 0 {
			t.Errorf("ParseRules(%q) = %v, %v", s, rs, err)
		}
	}
	if _, err := ParseRules(`[{"protocol":"tcp","type":"eight"}]`); err == nil {
		t.Error("bad JSON parsed")
	}
}
