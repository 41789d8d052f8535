package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/agent/asg"
	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

type staticGroups []policy.SecurityGroup

func (s staticGroups) SecurityGroups(context.Context, []string) ([]policy.SecurityGroup, error) {
	return s, nil
}

// TestDualStackASGSyncer checks the agent's wiring in iptables mode: with
// ipv6_overlay_network set, one SyncAll writes the asg chain of the same
// name in both families' tables, each with its own destinations, and the
// cleanup removes both; without it only iptables is written.
func TestDualStackASGSyncer(t *testing.T) {
	ctx := t.Context()
	groups := staticGroups{{GUID: "g", RunningDefault: true,
		Rules: `[{"protocol":"tcp","destination":"10.0.0.1,2001:db8::1","ports":"443"},{"protocol":"icmpv6","destination":"::/0","type":128,"code":0}]`}}
	for _, dual := range []bool{true, false} {
		cfg := Config{IPTablesDeniedLogsPerSec: 1}
		wcfg := &cniwrapper.Config{InstanceAddress: "10.244.0.3", NoMasqueradeCIDRRange: "10.255.0.0/16", IngressTag: "ffff0000",
			VTEPName: "silk-vtep", IPTablesDeniedLogsPerSec: 1, IPTablesAcceptedUDPLogsPerSec: 100}
		if dual {
			cfg.IPv6OverlayNetwork = "fd73:696c:6b::/96"
			wcfg.IPv6OverlayNetwork = cfg.IPv6OverlayNetwork
		}
		t4, t6 := iptablestest.New(), iptablestest.New()
		add, err := cniwrapper.PlanAdd(wcfg, cniwrapper.Container{Handle: "h1", IP: netip.MustParseAddr("10.255.1.2"), Workload: "app", Interfaces: []string{"eth0"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := t4.Apply(ctx, add.Filter); err != nil {
			t.Fatal(err)
		}
		if dual {
			if err := t6.Apply(ctx, add.IPv6.Filter); err != nil {
				t.Fatal(err)
			}
		}
		s, err := newASGSyncer(logtest.New(t), cfg, t4, t6, groups, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, isDual := s.(dualASG); isDual != dual {
			t.Fatalf("dual %v: syncer %T", dual, s)
		}
		if _, err := s.SyncAll(ctx, []asg.Container{{Handle: "h1", IP: "10.255.1.2", SpaceID: "s", Workload: "app"}}); err != nil {
			t.Fatal(err)
		}
		chain := rules.ASGChain("h1")
		st4, _ := t4.Save(ctx, iptables.Filter)
		st6, _ := t6.Save(ctx, iptables.Filter)
		if got := rulesText(st4.Rules(chain)); !strings.Contains(got, "10.0.0.1") || strings.Contains(got, "2001:db8") {
			t.Errorf("dual %v: iptables chain:\n%s", dual, got)
		}
		got6 := rulesText(st6.Rules(chain))
		if dual != (strings.Contains(got6, "2001:db8::1") && strings.Contains(got6, "--icmpv6-type 128/0") && !strings.Contains(got6, "10.0.0.1")) {
			t.Errorf("dual %v: ip6tables chain:\n%s", dual, got6)
		}
		if err := s.CleanupContainer(ctx, "h1"); err != nil {
			t.Fatal(err)
		}
		st4, _ = t4.Save(ctx, iptables.Filter)
		st6, _ = t6.Save(ctx, iptables.Filter)
		if st4.Has(chain) || st6.Has(chain) {
			t.Errorf("dual %v: cleanup left the asg chain", dual)
		}
	}
}

func rulesText(rs []iptables.Rule) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(string(r) + "\n")
	}
	return b.String()
}
