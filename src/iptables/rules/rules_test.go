package rules

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
)

func TestChainNames(t *testing.T) {
	long := "bfce786c-ab07-40ad-79f9-8f21-0123456789ab"
	for _, tc := range []struct{ got, want string }{
		{Prefix("netout", "abc"), "netout--abc"},
		{Prefix("netout", long), "netout--bfce786c-ab07-40ad-7"},
		{Prefix("overlay", long), "overlay--bfce786c-ab07-40ad-"},
		{Prefix("input", long), "input--bfce786c-ab07-40ad-79"},
		{Prefix("netin", long), "netin--bfce786c-ab07-40ad-79"},
		{Postfix(Prefix("netout", long), "log"), "netout--bfce786c-ab07-4--log"},
		{Postfix(Prefix("netout", long), "rl-log"), "netout--bfce786c-ab0--rl-log"},
		{Postfix("netout--abc", "log"), "netout--abc--log"},
		{LogPrefix("DENY_C2C_" + long), `"DENY_C2C_bfce786c-ab07-40ad- "`},
		{LogPrefix("OK_abc"), `"OK_abc "`},
		{Mark("ffff0000"), "0xffff0000"},
		{Mark("0000ffaa"), "0xffaa"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q want %q", tc.got, tc.want)
		}
	}
	for _, n := range []string{Prefix("netout", long), Postfix(Prefix("netout", long), "rl-log")} {
		if len(n) > MaxChainLen {
			t.Errorf("%q longer than %d", n, MaxChainLen)
		}
	}
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestConvertNetOut(t *testing.T) {
	nets := []IPRange{{ip("10.0.0.1"), ip("10.0.0.9")}, {ip("8.8.8.8"), ip("8.8.8.8")}}
	var warnings []string
	got := ConvertNetOut([]NetOutRule{
		{Protocol: TCP, Networks: nets[:1], Ports: []PortRange{{80, 80}, {8000, 9000}}},
		{Protocol: UDP, Networks: nets[1:], Ports: []PortRange{{53, 53}}, Log: true},
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{Type: 8, Code: 0}},
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{Type: 255, Code: 255}},
		{Protocol: All, Networks: nets},
		{Protocol: TCP, Networks: nets[:1], Ports: []PortRange{{80, 80}}}, // duplicate
		{Protocol: TCP, Networks: nets[:1]},                               // no ports
		{Protocol: ICMP, Networks: nets[:1]},                              // no type/code
		{Protocol: ICMP, Networks: nets[:1], ICMP: &ICMPInfo{}, Ports: []PortRange{{1, 1}}},
		{Protocol: All, Networks: nets[:1], Ports: []PortRange{{1, 1}}},
		{Protocol: All, Networks: []IPRange{{ip("::1"), ip("::2")}}},
	}, "netout--h--log", false, func(s string) { warnings = append(warnings, s) })
	want := []iptables.Rule{
		"-p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 80 -j ACCEPT",
		"-p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 8000:9000 -j ACCEPT",
		"-p udp -m iprange --dst-range 8.8.8.8-8.8.8.8 -m udp --dport 53 -g netout--h--log",
		"-p icmp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m icmp --icmp-type 8/0 -j ACCEPT",
		"-p icmp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m icmp --icmp-type any -j ACCEPT",
		"-m iprange --dst-range 10.0.0.1-10.0.0.9 -j ACCEPT",
		"-m iprange --dst-range 8.8.8.8-8.8.8.8 -j ACCEPT",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if len(warnings) != 5 || !strings.HasPrefix(warnings[0], "UDP/TCP rule must specify ports") {
		t.Errorf("warnings: %q", warnings)
	}
	logged := ConvertNetOut([]NetOutRule{{Protocol: All, Networks: nets[:1]}}, "L", true, nil)
	if !cmp.Equal(logged, []iptables.Rule{"-m iprange --dst-range 10.0.0.1-10.0.0.9 -g L"}) {
		t.Errorf("global logging: %q", logged)
	}
}

func TestNetOutChainOrder(t *testing.T) {
	deny, err := ParseDenyNetworks([]string{"10.0.0.1/8"}, []string{"172.16.0.0/12"}, []string{"192.168.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	c := NetOutChain{
		Handle: "h", Workload: "app", Deny: deny, ASGLogging: true, DeniedLogsPerSec: 2,
		Conn: OutConn{Limit: true, Logging: true, Burst: 999, RatePerSec: 100},
	}
	got := c.Rules([]NetOutRule{
		{Protocol: All, Networks: []IPRange{{ip("1.1.1.1"), ip("1.1.1.1")}}},
		{Protocol: All, Networks: []IPRange{{ip("2.2.2.2"), ip("2.2.2.2")}}},
	}, nil)
	want := []iptables.Rule{
		"-m state --state RELATED,ESTABLISHED -j ACCEPT",
		"-p tcp -m state --state INVALID -j DROP",
		"-p tcp -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 100/sec --hashlimit-burst 999 --hashlimit-mode dstip,dstport --hashlimit-name h --hashlimit-htable-expire 10000 -j netout--h--rl-log",
		"-d 172.16.0.0/12 -j REJECT --reject-with icmp-port-unreachable",
		"-d 10.0.0.0/8 -j REJECT --reject-with icmp-port-unreachable",
		"-m iprange --dst-range 2.2.2.2-2.2.2.2 -g netout--h--log",
		"-m iprange --dst-range 1.1.1.1-1.1.1.1 -g netout--h--log",
		`-m limit --limit 2/sec --limit-burst 2 -j LOG --log-prefix "DENY_h "`,
		"-j REJECT --reject-with icmp-port-unreachable",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if _, err := ParseDenyNetworks([]string{"nope"}, nil, nil); err == nil || err.Error() != "deny networks: invalid CIDR address: nope" {
		t.Errorf("bad CIDR: %v", err)
	}
	if _, err := ParseDenyNetworks(nil, nil, []string{"fd00::/8"}); err == nil {
		t.Error("IPv6 CIDR accepted")
	}
}

func TestRateLimitVariants(t *testing.T) {
	for _, tc := range []struct {
		conn      OutConn
		chain     bool
		target    string // "" = no hashlimit rule
		chainRule []iptables.Rule
	}{
		{OutConn{}, false, "", nil},
		{OutConn{Logging: true}, false, "", nil},
		{OutConn{Limit: true}, false, "REJECT --reject-with icmp-port-unreachable", nil},
		{OutConn{Limit: true, Logging: true}, true, "netout--h--rl-log", []iptables.Rule{`-m limit --limit 1/sec --limit-burst 1 -j LOG --log-prefix "DENY_ORL_h "`, Reject()}},
		{OutConn{DryRun: true}, true, "netout--h--rl-log", []iptables.Rule{`-m limit --limit 1/sec --limit-burst 1 -j LOG --log-prefix "DENY_ORL_h "`}},
		{OutConn{Limit: true, DryRun: true}, true, "netout--h--rl-log", []iptables.Rule{`-m limit --limit 1/sec --limit-burst 1 -j LOG --log-prefix "DENY_ORL_h "`}},
	} {
		tc.conn.Burst, tc.conn.RatePerSec = 1000, 300
		c := NetOutChain{Handle: "h", DeniedLogsPerSec: 1, Conn: tc.conn}
		if c.Conn.RateLimitLogChainNeeded() != tc.chain {
			t.Errorf("%+v: chain needed %v", tc.conn, !tc.chain)
		}
		var hl iptables.Rule
		for _, r := range c.List(nil, nil) {
			if strings.Contains(string(r), "hashlimit") {
				hl = r
			}
		}
		if tc.target == "" {
			if hl != "" {
				t.Errorf("%+v: unexpected %q", tc.conn, hl)
			}
			continue
		}
		if !strings.HasSuffix(string(hl), "--hashlimit-htable-expire 4000 -j "+tc.target) {
			t.Errorf("%+v: %q", tc.conn, hl)
		}
		if tc.chain && !cmp.Equal(c.RateLimitLogRules(), tc.chainRule) {
			t.Errorf("%+v: rl-log rules %q", tc.conn, c.RateLimitLogRules())
		}
	}
}

// TestConvertNetOutFamilies checks the split by destination family: each
// family's tables get only their ranges, icmp only IPv4, icmpv6 only IPv6,
// tcp/udp/all whichever family the destination is.
func TestConvertNetOutFamilies(t *testing.T) {
	v4 := IPRange{ip("10.0.0.1"), ip("10.0.0.9")}
	v6 := IPRange{ip("2001:db8::1"), ip("2001:db8::ff")}
	mixed := IPRange{ip("10.0.0.1"), ip("2001:db8::1")}
	in := []NetOutRule{
		{Protocol: TCP, Networks: []IPRange{v4, v6}, Ports: []PortRange{{443, 443}}},
		{Protocol: ICMP, Networks: []IPRange{v4, v6}, ICMP: &ICMPInfo{Type: 8, Code: 0}},
		{Protocol: ICMPv6, Networks: []IPRange{v4, v6}, ICMP: &ICMPInfo{Type: 128, Code: 0}},
		{Protocol: ICMPv6, Networks: []IPRange{v6}, ICMP: &ICMPInfo{Type: 255, Code: 0}},
		{Protocol: ICMPv6, Networks: []IPRange{v6}},
		{Protocol: All, Networks: []IPRange{v6, mixed}},
	}
	for _, tc := range []struct {
		name     string
		fam      iptables.Family
		dual     bool
		want     []iptables.Rule
		warnings []string
	}{{
		name: "ipv4 only cell",
		fam:  iptables.IPv4,
		want: []iptables.Rule{
			"-p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 443 -j ACCEPT",
			"-p icmp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m icmp --icmp-type 8/0 -j ACCEPT",
		},
		warnings: []string{
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in tcp rule",
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in icmp rule",
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in icmpv6 rule",
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in icmpv6 rule",
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in icmpv6 rule",
			"skipping non-IPv4 range 2001:db8::1-2001:db8::ff in all rule",
			"skipping non-IPv4 range 10.0.0.1-2001:db8::1 in all rule",
		},
	}, {
		name: "dual stack ipv4 tables",
		fam:  iptables.IPv4, dual: true,
		want: []iptables.Rule{
			"-p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 443 -j ACCEPT",
			"-p icmp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m icmp --icmp-type 8/0 -j ACCEPT",
		},
		warnings: []string{"skipping range 10.0.0.1-2001:db8::1 mixing IPv4 and IPv6 in all rule"},
	}, {
		name: "dual stack ipv6 tables",
		fam:  iptables.IPv6, dual: true,
		want: []iptables.Rule{
			"-p tcp -m iprange --dst-range 2001:db8::1-2001:db8::ff -m tcp --dport 443 -j ACCEPT",
			"-p ipv6-icmp -m iprange --dst-range 2001:db8::1-2001:db8::ff -m icmp6 --icmpv6-type 128/0 -j ACCEPT",
			"-p ipv6-icmp -m iprange --dst-range 2001:db8::1-2001:db8::ff -j ACCEPT",
			"-m iprange --dst-range 2001:db8::1-2001:db8::ff -j ACCEPT",
		},
		warnings: []string{
			"ICMPv6 rule must specify ICMP type/code: {Protocol:icmpv6 Networks:[{Start:2001:db8::1 End:2001:db8::ff}] Ports:[] ICMP:<nil> Log:false}",
			"skipping range 10.0.0.1-2001:db8::1 mixing IPv4 and IPv6 in all rule",
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			var warnings []string
			got := ConvertNetOutFamily(in, tc.fam, tc.dual, "log", false, func(s string) { warnings = append(warnings, s) })
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("rules (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.warnings, warnings); diff != "" {
				t.Errorf("warnings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNetOutChainIPv6(t *testing.T) {
	deny, err := ParseDenyNetworksDual([]string{"10.0.0.0/8", "fd00::1/8"}, nil, []string{"2001:db8::/32"}, true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDenyNetworks([]string{"fd00::/8"}, nil, nil); err == nil || err.Error() != "deny networks: invalid CIDR address: fd00::/8" {
		t.Errorf("IPv4-only cell accepted an IPv6 deny network: %v", err)
	}
	c := NetOutChain{Handle: "h", Workload: "staging", Deny: deny, Family: iptables.IPv6, DualStack: true,
		Conn: OutConn{Limit: true, Burst: 10, RatePerSec: 5}}
	want := []iptables.Rule{
		"-m state --state RELATED,ESTABLISHED -j ACCEPT",
		"-p tcp -m state --state INVALID -j DROP",
		"-p tcp -m conntrack --ctstate NEW -m hashlimit --hashlimit-above 5/sec --hashlimit-burst 10 --hashlimit-mode dstip,dstport --hashlimit-name h --hashlimit-htable-expire 2000 -j REJECT --reject-with icmp6-port-unreachable",
		"-d 2001:db8::/32 -j REJECT --reject-with icmp6-port-unreachable",
		"-d fd00::/8 -j REJECT --reject-with icmp6-port-unreachable",
		"-j REJECT --reject-with icmp6-port-unreachable",
	}
	if diff := cmp.Diff(want, c.Rules(nil, nil)); diff != "" {
		t.Errorf("ipv6 netout chain (-want +got):\n%s", diff)
	}
}
