package asgsyncer_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/standin/cc"
)

// BenchmarkSyncCycle is the syncer's cost per cycle with 1,000 security
// groups (10 rules and 5 space bindings each) in Cloud Controller, over
// loopback TLS to the fake Cloud Controller and into SQLite:
//   - skip: asg_latest_update did not move (the steady state);
//   - one-changed: one group changed, so the whole listing is read and the
//     table replaced (one row rewritten).
func BenchmarkSyncCycle(b *testing.B) {
	const groups = 1000
	e := newSyncEnv(b, 30*time.Second)
	for i := range groups {
		e.cc.PutV2(benchGroup(i, 0))
	}
	e.cc.Put(benchGroup(0, 0))
	ctx := context.Background()
	if err := e.syncer.Poll(ctx); err != nil {
		b.Fatal(err)
	}
	if n := len(table(b, e.db)); n != groups {
		b.Fatalf("table has %d groups", n)
	}

	b.Run("skip", func(b *testing.B) {
		for b.Loop() {
			if err := e.syncer.Poll(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("one-changed", func(b *testing.B) {
		gen := 0
		for b.Loop() {
			b.StopTimer()
			gen++
			e.cc.Put(benchGroup(gen%groups, gen))
			b.StartTimer()
			if err := e.syncer.Poll(ctx); err != nil {
				b.Fatal(err)
			}
		}
		if got := e.rec.counter(asgsyncer.MetricSyncError); got != 0 {
			b.Fatalf("%d failed cycles", got)
		}
	})
}

func benchGroup(i, gen int) cc.SecurityGroup {
	g := cc.SecurityGroup{GUID: fmt.Sprintf("asg-%04d", i), Name: fmt.Sprintf("group-%d-gen-%d", i, gen)}
	for r := range 10 {
		g.Rules = append(g.Rules, cc.Rule{Protocol: "tcp", Destination: fmt.Sprintf("10.%d.%d.0/24", i%250, r), Ports: "443,8000-8100"})
	}
	for s := range 5 {
		g.RunningSpaces = append(g.RunningSpaces, fmt.Sprintf("space-%d", (i+s)%400))
	}
	return g
}
