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
