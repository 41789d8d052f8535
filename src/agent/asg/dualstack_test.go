package asg

import (
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
)

const overlay6 = "fd73:696c:6b::/96"

// Dual-stack security groups, in the BBS/CC shapes: IPv6 destinations,
// icmpv6 with type and code ("icmpv6-support-asg"), icmp rules (IPv4 only)
// and all/tcp/udp rules whose destinations mix both families.
var (
	sgDual = policy.SecurityGroup{GUID: "dual", Name: "dual", RunningDefault: true,
		Rules: `[
			{"protocol":"tcp","destination":"10.0.0.0/8,2001:db8::/32","ports":"443"},
			{"protocol":"udp","destination":"2001:4860:4860::8888","ports":"53","log":true},
			{"protocol":"icmpv6","destination":"::/0","type":128,"code":0},
			{"protocol":"icmpv6","destination":"2001:db8::1","type":-1,"code":-1},
			{"protocol":"icmp","destination":"0.0.0.0/0","type":8,"code":0},
			{"protocol":"all","destination":"fd00::1-fd00::ff,192.168.0.0/16"}
		]`}
	sgDualSpace = policy.SecurityGroup{GUID: "dual-space", Name: "dual-space", RunningSpaceGUIDs: []string{"space-1"},
		Rules: `[{"protocol":"tcp","destination":"2001:db8::80-2001:db8::1ff","ports":"80,8080-8090"}]`}
)

var dualContainers = []Container{
	{Handle: hApp, IP: "10.255.17.5", SpaceID: "space-1", Workload: "app"},
	{Handle: hOther, IP: "10.255.17.8", SpaceID: "space-2", Workload: "app"},
}

func dualConfigs(t *testing.T) []struct {
	name string
	cfg  Config
} {
	deny, err := rules.ParseDenyNetworksDual([]string{"169.254.0.0/16", "fd00:ec2::254/128"}, []string{"2001:db8:ff::/48"}, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name string
		cfg  Config
	}{
		{"dual-stack", Config{DeniedLogsPerSec: 1, Deny: deny, IPv6OverlayNetwork: overlay6,
			Conn: rules.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}}},
		{"dual-stack-disable-container-network-policy", Config{DisableContainerNetworkPolicy: true,
			OverlayNetwork: "10.255.0.0/16", IPv6OverlayNetwork: overlay6}},
	}
}

// TestPlanDualStackGolden renders the asg chains of a dual-stack cell for
// iptables (the IPv4 syncer: no IPv6 destination, no icmpv6, and no
// warning about them) and ip6tables (the IPv6 syncer: the chains of the
// same names with the IPv6 destinations, icmpv6 and IPv6 deny networks,
// and no icmp rule), then the nftables plan, where one chain holds both.
func TestPlanDualStackGolden(t *testing.T) {
	groups := []policy.SecurityGroup{sgDual, sgDualSpace}
	for _, tc := range dualConfigs(t) {
		t.Run(tc.name, func(t *testing.T) {
			var out string
			for _, fam := range []iptables.Family{iptables.IPv4, iptables.IPv6} {
				cfg := tc.cfg
				cfg.Family = fam
				p, err := NewPlanner(cfg)
				if err != nil {
					t.Fatal(err)
				}
				out += "### " + fam.String() + " (iptables, family " + fam.String() + ")\n" + renderPlans(p.Plan(dualContainers, groups))
			}
			p, err := NewPlanner(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			out += "### nftables\n" + renderNFTPlans(p.PlanNFT(dualContainers, groups, 100))
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), []byte(out))
		})
	}
}

func TestNewPlannerIPv6(t *testing.T) {
	for _, cfg := range []Config{
		{Family: iptables.IPv6},
		{IPv6OverlayNetwork: "10.255.0.0/16"},
	} {
		if _, err := NewPlanner(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
}
