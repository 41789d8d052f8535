package asg

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// Handles: a long Diego-like one (names are truncated), a short one, and a
// health-check one.
const (
	hApp     = "bfce786c-ab07-40ad-79f9-8f21-0123456789ab"
	hTask    = "6b2e0a7c-1d44-4f3e-5a1b-77c2"
	hStaging = "check-0c1d2e3f-4a5b-6c7d-8e9f"
	hOther   = "a1b2c3d4"
	hNoSpace = "e5f6a7b8"
	hBad     = "ba0d0000-1111-2222-3333-4444"
)

// Security groups used by the golden cases.
var (
	sgDefaultRunning = policy.SecurityGroup{GUID: "default-running", Name: "public_networks", RunningDefault: true,
		Rules: `[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80, 443"},{"protocol":"udp","destination":"8.8.8.8","ports":"53"}]`}
	sgDefaultStaging = policy.SecurityGroup{GUID: "default-staging", Name: "staging", StagingDefault: true,
		Rules: `[{"protocol":"all","destination":"0.0.0.0-9.255.255.255"}]`}
	sgSpaceRunning = policy.SecurityGroup{GUID: "space-running", Name: "db", RunningSpaceGUIDs: []string{"space-1"},
		Rules: `[
			{"protocol":"icmp","destination":"10.1.0.0/16","type":-1,"code":-1},
			{"protocol":"icmp","destination":"10.2.0.1","type":8,"code":0,"log":true},
			{"protocol":"icmp","destination":"10.2.0.2","type":3,"code":-1},
			{"protocol":"tcp","destination":"192.168.1.10-192.168.1.20, 172.16.0.1","ports":"1000-2000,bad, 3000 - 3100"},
			{"protocol":"all","destination":"172.17.0.0/16","log":true}
		]`}
	// The same rule as sgDefaultRunning's first, bound to the space too
	// (silk-release#102): no duplicate iptables rule.
	sgDuplicate = policy.SecurityGroup{GUID: "duplicate", Name: "dup", RunningSpaceGUIDs: []string{"space-1"},
		Rules: `[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80,443"}]`}
	sgSpaceStaging = policy.SecurityGroup{GUID: "space-staging", Name: "git", StagingSpaceGUIDs: []string{"space-1"},
		Rules: `[{"protocol":"tcp","destination":"192.168.0.1","ports":"22"}]`}
	// A default group also listing a space is not applied twice.
	sgDefaultWithSpace = policy.SecurityGroup{GUID: "default-with-space", Name: "dns", RunningDefault: true, RunningSpaceGUIDs: []string{"space-1"},
		Rules: `[{"protocol":"udp","destination":"1.1.1.1","ports":"53"}]`}
	sgBadDestination = policy.SecurityGroup{GUID: "bad-destination", Name: "bad", RunningSpaceGUIDs: []string{"space-bad"},
		Rules: `[{"protocol":"tcp","destination":"10.0.0.1, 10.0.0.300","ports":"80"}]`}
	sgBadJSON = policy.SecurityGroup{GUID: "bad-json", Name: "badjson", StagingSpaceGUIDs: []string{"space-bad"},
		Rules: `[{"protocol":"tcp"`}
	sgDropped = policy.SecurityGroup{GUID: "dropped", Name: "dropped", RunningSpaceGUIDs: []string{"space-2"},
		Rules: `[
			{"protocol":"tcp","destination":"10.9.0.1"},
			{"protocol":"udp","destination":"10.9.0.2","ports":"x"},
			{"protocol":"all","destination":"10.9.0.3","ports":"80"},
			{"protocol":"icmp","destination":"10.9.0.4","ports":"80"},
			{"protocol":"sctp","destination":"10.9.0.5","ports":"80"},
			{"protocol":"tcp","destination":"10.9.0.6","ports":"8080"}
		]`}
)

var allGroups = []policy.SecurityGroup{sgDefaultRunning, sgDefaultStaging, sgSpaceRunning, sgDuplicate, sgSpaceStaging,
	sgDefaultWithSpace, sgBadDestination, sgBadJSON, sgDropped}

var goldenContainers = []Container{
	{Handle: hApp, IP: "10.255.17.5", SpaceID: "space-1", Workload: "app", LogConfig: &LogConfig{GUID: "app-guid", Index: 2, SourceName: "CELL"}},
	{Handle: hTask, IP: "10.255.17.6", SpaceID: "space-1", Workload: "task"},
	{Handle: hStaging, IP: "10.255.17.7", SpaceID: "space-1", Workload: "staging"},
	{Handle: hOther, IP: "10.255.17.8", SpaceID: "space-2", Workload: "app"},
	{Handle: "f00d", IP: "10.255.17.9", SpaceID: "space-3", Workload: ""}, // no lifecycle: no ASG rules
	{Handle: hNoSpace, IP: "10.255.17.10", Workload: "app"},               // no space: no chain
	{Handle: hBad, IP: "10.255.17.11", SpaceID: "space-bad", Workload: "app"},
	{Handle: "ba0d0000-staging", IP: "10.255.17.12", SpaceID: "space-bad", Workload: "staging"},
	{Handle: "bfce786c-ab07-40ad-79f9-8f21-ffff", IP: "10.255.17.13", SpaceID: "space-3", Workload: "app"}, // same asg chain as hApp
}

func renderPlans(plans []ChainPlan) string {
	var b strings.Builder
	for _, p := range plans {
		c := p.Container
		fmt.Fprintf(&b, "# %s space=%s workload=%q parent=%s\n", c.Handle, c.SpaceID, c.Workload, p.Parent)
		if p.Err != nil {
			fmt.Fprintf(&b, "# skipped: %v\n", p.Err)
		}
		for _, w := range p.Warnings {
			fmt.Fprintf(&b, "# dropped: %s\n", w)
		}
		for _, r := range p.Rules {
			fmt.Fprintf(&b, "-A %s %s\n", p.Chain, r)
		}
	}
	return b.String()
}

func TestPlanGolden(t *testing.T) {
	overlay := "10.255.0.0/16"
	deny, err := rules.ParseDenyNetworks([]string{"169.254.0.0/16"}, []string{"10.10.0.0/16"}, []string{"10.20.0.1/16"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"plan-defaults", Config{DeniedLogsPerSec: 1}},
		{"plan-asg-logging", Config{ASGLogging: true, DeniedLogsPerSec: 3}},
		{"plan-deny-networks-conn-limit", Config{Deny: deny, DeniedLogsPerSec: 1,
			Conn: rules.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}}},
		{"plan-conn-limit-no-logging", Config{Conn: rules.OutConn{Limit: true, Burst: 7, RatePerSec: 3}}},
		{"plan-disable-container-network-policy", Config{DisableContainerNetworkPolicy: true, OverlayNetwork: overlay}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlanner(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".golden"), []byte(renderPlans(p.Plan(goldenContainers, allGroups))))
		})
	}
}

func TestPlanSkipsAndKeepsOrder(t *testing.T) {
	p, _ := NewPlanner(Config{})
	plans := p.Plan(goldenContainers, allGroups)
	var handles []string
	skipped := map[string]bool{}
	for _, pl := range plans {
		handles = append(handles, pl.Container.Handle)
		if pl.Err != nil {
			skipped[pl.Container.Handle] = true
			if pl.Rules != nil {
				t.Errorf("%s skipped but has rules", pl.Container.Handle)
			}
		}
	}
	want := []string{hApp, hTask, hStaging, hOther, "f00d", hBad, "ba0d0000-staging", "bfce786c-ab07-40ad-79f9-8f21-ffff"}
	if diff := cmp.Diff(want, handles); diff != "" {
		t.Errorf("planned containers (-want +got):\n%s", diff)
	}
	wantSkipped := map[string]bool{hBad: true, "ba0d0000-staging": true, "bfce786c-ab07-40ad-79f9-8f21-ffff": true}
	if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
		t.Errorf("skipped (-want +got):\n%s", diff)
	}
}

func TestPlanNoGroups(t *testing.T) {
	p, _ := NewPlanner(Config{})
	plans := p.Plan([]Container{{Handle: "h", SpaceID: "s", Workload: "app"}}, nil)
	want := "# h space=s workload=\"app\" parent=netout--h\n" +
		"-A asg-h -m state --state RELATED,ESTABLISHED -j ACCEPT\n" +
		"-A asg-h -p tcp -m state --state INVALID -j DROP\n" +
		"-A asg-h -j REJECT --reject-with icmp-port-unreachable\n"
	if diff := cmp.Diff(want, renderPlans(plans)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestNewPlannerChecksOverlay(t *testing.T) {
	for _, o := range []string{"", "10.255.0.0", "fd00::/8", "nope"} {
		if _, err := NewPlanner(Config{DisableContainerNetworkPolicy: true, OverlayNetwork: o}); err == nil {
			t.Errorf("overlay %q accepted", o)
		}
	}
	if _, err := NewPlanner(Config{OverlayNetwork: "nope"}); err != nil {
		t.Errorf("overlay checked although policy is enabled: %v", err)
	}
	p, err := NewPlanner(Config{DisableContainerNetworkPolicy: true, OverlayNetwork: "10.255.3.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	plans := p.Plan([]Container{{Handle: "h", SpaceID: "s"}}, nil)
	if got := plans[0].Rules[0]; got != rules.OverlayAcceptAll(netip.MustParsePrefix("10.255.0.0/16")) {
		t.Errorf("first rule %q", got)
	}
}

func TestSpaceGUIDs(t *testing.T) {
	got := SpaceGUIDs([]Container{{SpaceID: "b"}, {SpaceID: ""}, {SpaceID: "a"}, {SpaceID: "b"}})
	if diff := cmp.Diff([]string{"a", "b"}, got); diff != "" {
		t.Error(diff)
	}
	if got := SpaceGUIDs([]Container{{Handle: "x"}}); got != nil {
		t.Errorf("got %v", got)
	}
}

// BenchmarkPlan250x100 plans 250 containers with 100 rules each (no
// iptables).
func BenchmarkPlan250x100(b *testing.B) {
	cs := benchContainers(250, func(i int) string { return fmt.Sprintf("space-%d", i) })
	groups := make([]policy.SecurityGroup, len(cs))
	for i, c := range cs {
		groups[i] = bigGroup(c.SpaceID, 100, 0, []string{c.SpaceID}, false)
	}
	p, _ := NewPlanner(Config{ASGLogging: true, DeniedLogsPerSec: 1})
	b.ReportAllocs()
	for b.Loop() {
		p.Plan(cs, groups)
	}
}

func TestPlanConversionCacheFollowsChanges(t *testing.T) {
	p, _ := NewPlanner(Config{})
	cs := []Container{{Handle: "h", SpaceID: "s", Workload: "app"}}
	g := policy.SecurityGroup{GUID: "g", RunningSpaceGUIDs: []string{"s"}, Rules: `[{"protocol":"tcp","destination":"10.0.0.1","ports":"80"}]`}
	first := p.Plan(cs, []policy.SecurityGroup{g})
	again := p.Plan(cs, []policy.SecurityGroup{g})
	if diff := cmp.Diff(renderPlans(first), renderPlans(again)); diff != "" {
		t.Error(diff)
	}
	g.Rules = `[{"protocol":"tcp","destination":"10.0.0.1","ports":"81"}]`
	changed := renderPlans(p.Plan(cs, []policy.SecurityGroup{g}))
	if !strings.Contains(changed, "--dport 81 ") || strings.Contains(changed, "--dport 80 ") {
		t.Errorf("cache served stale rules:\n%s", changed)
	}
	g.Rules = `[{"protocol":"tcp","destination":"nope","ports":"81"}]`
	if pl := p.Plan(cs, []policy.SecurityGroup{g}); pl[0].Err == nil {
		t.Error("bad destination not reported")
	}
}
