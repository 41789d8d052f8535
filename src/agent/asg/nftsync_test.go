package asg

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// TestNFTSyncer: the agent's ASG syncer in nftables mode — a full sync,
// the app log notes, a forced sync of one container that leaves the others
// alone (also before the first full sync), a clean-up, and drift put back
// by the periodic re-read.
func TestNFTSyncer(t *testing.T) {
	ctx := context.Background()
	src := &fakeSource{}
	src.set(policy.SecurityGroup{GUID: "g", RunningSpaceGUIDs: []string{"s"}, Rules: `[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80"}]`})
	f := nftCell(t, "h1", "h2", "h3")
	var notes []string
	newSyncer := func() *NFTSyncer {
		s, err := NewNFT(logtest.New(t), f, src, Config{}, 100, func(c Container) { notes = append(notes, c.Handle) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	lc := &LogConfig{GUID: "app"}
	h1 := Container{Handle: "h1", SpaceID: "s", Workload: "app", LogConfig: lc}
	h2 := Container{Handle: "h2", SpaceID: "s", Workload: "app", LogConfig: lc}
	h3 := Container{Handle: "h3", SpaceID: "s", Workload: "app", LogConfig: lc}
	s := newSyncer()
	if _, err := s.SyncAll(ctx, []Container{h1, h2}); err != nil {
		t.Fatal(err)
	}
	parent := func(h string) []string { return f.Ruleset().Chain(nft.NetOutChain(h)).Rules }
	for _, h := range []string{"h1", "h2"} {
		if got := parent(h); !cmp.Equal(got, []string{"jump asg--" + h, "reject"}) {
			t.Errorf("netout--%s: %q", h, got)
		}
	}
	if !cmp.Equal(notes, []string{"h1", "h2"}) {
		t.Errorf("notes %q", notes)
	}
	// Idle: no transaction, no notes.
	last := f.LastTransaction
	if _, err := s.SyncAll(ctx, []Container{h1, h2}); err != nil || f.LastTransaction != last || len(notes) != 2 {
		t.Errorf("idle sync: %v, wrote %v, notes %q", err, f.LastTransaction != last, notes)
	}
	// A forced sync of a new container adds it beside the others.
	if err := s.SyncContainers(ctx, []Container{h3}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if f.Ruleset().Chain("asg--"+h) == nil {
			t.Errorf("asg--%s missing after the forced sync of h3", h)
		}
	}
	// Clean-up of h1.
	if err := s.CleanupContainer(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if f.Ruleset().Chain("asg--h1") != nil || !cmp.Equal(parent("h1"), []string{"reject"}) || f.Ruleset().Chain("asg--h2") == nil {
		t.Errorf("after clean-up of h1:\n%s", f.Ruleset())
	}
	// Drift: a rule of asg--h2 changed by hand stays until the re-read.
	tx := f.NewTransaction()
	tx.Flush(&knftables.Chain{Name: "asg--h2"})
	if err := f.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	s.DriftEvery = time.Hour
	s.lastRead = time.Now()
	if _, err := s.SyncAll(ctx, []Container{h2, h3}); err != nil || len(f.Ruleset().Chain("asg--h2").Rules) != 0 {
		t.Fatalf("repaired before the re-read was due: %v", err)
	}
	s.DriftEvery = time.Nanosecond
	if _, err := s.SyncAll(ctx, []Container{h2, h3}); err != nil || len(f.Ruleset().Chain("asg--h2").Rules) == 0 {
		t.Fatalf("drift not repaired: %v\n%s", err, f.Ruleset())
	}

	// A restarted agent forced to sync one container before its first
	// full sync keeps the other containers' objects.
	s = newSyncer()
	if err := s.SyncContainers(ctx, []Container{h1}); err != nil {
		t.Fatal(err)
	}
	var asgChains []string
	for _, c := range f.Ruleset().Chains {
		if _, ok := asgHandle(c.Name); ok {
			asgChains = append(asgChains, c.Name)
		}
	}
	slices.Sort(asgChains)
	if want := []string{"asg--h1", "asg--h2", "asg--h3"}; !slices.Equal(asgChains, want) {
		t.Errorf("asg chains %q, want %q", asgChains, want)
	}
}
