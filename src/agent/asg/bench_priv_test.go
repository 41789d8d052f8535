package asg

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// bigGroup is a security group with n tcp rules to distinct addresses;
// variant changes the port of the last rule.
func bigGroup(guid string, n, variant int, running []string, def bool) policy.SecurityGroup {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		port := 443
		if i == n-1 {
			port = 1000 + variant
		}
		fmt.Fprintf(&b, `{"protocol":"tcp","destination":"10.%d.%d.0/24","ports":"%d"}`, i/250, i%250, port)
	}
	b.WriteString("]")
	return policy.SecurityGroup{GUID: guid, Rules: b.String(), RunningDefault: def, RunningSpaceGUIDs: running}
}

func benchContainers(n int, space func(i int) string) []Container {
	cs := make([]Container, n)
	for i := range cs {
		cs[i] = Container{
			Handle: fmt.Sprintf("%08x-aaaa-bbbb-cccc-%012d", i, i), IP: fmt.Sprintf("10.255.%d.%d", i/250, i%250+2),
			SpaceID: space(i), Workload: "app",
		}
	}
	return cs
}

func setupBench(b *testing.B, f iptables.Flavor, cs []Container) *nsBackend {
	netnstest.RequireRoot(b)
	be := newNSBackend(b, f)
	wcfg := wrapperConfig(false, cniwrapper.OutConn{})
	var txs []*iptables.Tx
	for _, c := range cs {
		plan, err := cniwrapper.PlanAdd(wcfg, cniwrapper.Container{Handle: c.Handle, IP: mustAddr(c.IP), Workload: c.Workload, Interfaces: []string{"eth0"}})
		if err != nil {
			b.Fatal(err)
		}
		txs = append(txs, plan.Filter)
	}
	if err := be.Apply(context.Background(), txs...); err != nil {
		b.Fatal(err)
	}
	return be
}

func benchFlavors(b *testing.B, fn func(b *testing.B, f iptables.Flavor)) {
	netnstest.RequireRoot(b)
	for _, f := range netnstest.IPTablesFlavors(b) {
		b.Run(string(f), func(b *testing.B) { fn(b, f) })
	}
}

// BenchmarkEnforceOneContainer1000Rules: the force endpoint for one
// container whose space has a 1000-rule ASG (about 1000 rules in its chain).
func BenchmarkEnforceOneContainer1000Rules(b *testing.B) {
	benchFlavors(b, func(b *testing.B, f iptables.Flavor) {
		cs := benchContainers(1, func(int) string { return "space" })
		be := setupBench(b, f, cs)
		ctx := context.Background()
		source := &fakeSource{groups: []policy.SecurityGroup{bigGroup("g", 1000, 0, []string{"space"}, false)}}
		s, err := New(lager.NewLogger("bench"), be, source, Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("first-sync", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				if err := s.CleanupContainer(ctx, cs[0].Handle); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := s.SyncContainers(ctx, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
		variant := 0
		b.Run("one-rule-change", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				variant++
				source.set(bigGroup("g", 1000, variant, []string{"space"}, false))
				if err := s.SyncContainers(ctx, cs); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkFullPoll250x100: the ASG poll on a cell with 250 containers,
// each with about 100 ASG rules (25,000 rules in asg chains).
func BenchmarkFullPoll250x100(b *testing.B) {
	benchFlavors(b, func(b *testing.B, f iptables.Flavor) {
		// One space per container, each with its own 100-rule group.
		cs := benchContainers(250, func(i int) string { return fmt.Sprintf("space-%d", i) })
		be := setupBench(b, f, cs)
		ctx := context.Background()
		groups := make([]policy.SecurityGroup, len(cs))
		for i, c := range cs {
			groups[i] = bigGroup(c.SpaceID, 100, 0, []string{c.SpaceID}, false)
		}
		source := &fakeSource{groups: groups}
		s, err := New(lager.NewLogger("bench"), be, source, Config{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		poll := func(b *testing.B) Stats {
			st, err := s.SyncAll(ctx, cs)
			if err != nil {
				b.Fatal(err)
			}
			return st
		}
		b.Run("first-sync", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				// A poll without containers removes every asg chain.
				if _, err := s.SyncAll(ctx, nil); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if st := poll(b); st.Updated != len(cs) {
					b.Fatalf("updated %d", st.Updated)
				}
			}
		})
		b.Run("no-change", func(b *testing.B) {
			poll(b)
			for i := 0; i < b.N; i++ {
				if st := poll(b); st.Updated != 0 {
					b.Fatalf("updated %d", st.Updated)
				}
			}
		})
		variant := 0
		b.Run("one-container-changed", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				variant++
				g := append([]policy.SecurityGroup(nil), groups...)
				g[7] = bigGroup(cs[7].SpaceID, 100, variant, []string{cs[7].SpaceID}, false)
				source.set(g...)
				if st := poll(b); st.Updated != 1 {
					b.Fatalf("updated %d", st.Updated)
				}
			}
		})
		b.Run("all-changed", func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				variant++
				g := make([]policy.SecurityGroup, len(cs))
				for j, c := range cs {
					g[j] = bigGroup(c.SpaceID, 100, variant, []string{c.SpaceID}, false)
				}
				source.set(g...)
				if st := poll(b); st.Updated != len(cs) {
					b.Fatalf("updated %d", st.Updated)
				}
			}
		})
	})
}
