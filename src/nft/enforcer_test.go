package nft

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"
)

func owned(elements ...string) *Ruleset {
	s := &Set{Name: "t-set", Type: "ipv4_addr . inet_service", Interval: true}
	for _, e := range elements {
		s.Elements = append(s.Elements, Element{Key: e})
	}
	return &Ruleset{
		Sets:   []*Set{s},
		Chains: []*Chain{{Name: "t-chain", Rules: []string{"ip daddr . tcp dport @t-set accept"}}},
	}
}

var tScope = PrefixScope(nil, "t-")

func TestEnforcerWritesOnlyTheChange(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	e := NewEnforcer(f, tScope)

	res, err := e.Enforce(ctx, owned("10.0.0.1 . 80", "10.0.0.2 . 80"), nil)
	if err != nil || !res.Full || res.ElementsAdded != 2 || res.ChainsAdded != 1 || res.SetsAdded != 1 {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	if f.Table.Chains[ChainForward] == nil || f.Table.Maps[MapOverlay] == nil {
		t.Fatal("first sync did not create the skeleton")
	}

	last := f.LastTransaction
	res, err = e.Enforce(ctx, owned("10.0.0.2 . 80", "10.0.0.1 . 80"), nil)
	if err != nil || res.Changed() || f.LastTransaction != last {
		t.Fatalf("unchanged input: %+v, %v; ran a transaction: %t", res, err, f.LastTransaction != last)
	}

	res, err = e.Enforce(ctx, owned("10.0.0.1 . 80", "10.0.0.3 . 443"), nil)
	if err != nil || res.Full || res.ElementsAdded != 1 || res.ElementsDeleted != 1 || res.Rules != 0 {
		t.Fatalf("one change: %+v, %v", res, err)
	}
	if got := f.LastTransaction.String(); got != "delete element inet netman t-set { 10.0.0.2 . 80-80 }\nadd element inet netman t-set { 10.0.0.3 . 443-443 }\n" {
		t.Errorf("transaction:\n%s", got)
	}

	// A restarted enforcer adopts the table without writing.
	last = f.LastTransaction
	res, err = NewEnforcer(f, tScope).Enforce(ctx, owned("10.0.0.1 . 80", "10.0.0.3 . 443"), nil)
	if err != nil || !res.Full || res.Changed() || f.LastTransaction != last {
		t.Fatalf("restart: %+v, %v", res, err)
	}
}

func TestEnforcerResyncsAfterARejectedDelta(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	e := NewEnforcer(f, tScope)
	if _, err := e.Enforce(ctx, owned("10.0.0.1 . 80", "10.0.0.2 . 80"), nil); err != nil {
		t.Fatal(err)
	}
	// Someone deletes an element behind the enforcer's back: the delta
	// deleting it fails, and the enforcer converges from what is there.
	tx := f.NewTransaction()
	tx.Delete(&knftables.Element{Set: "t-set", Key: []string{"10.0.0.2", "80-80"}})
	tx.Add(&knftables.Element{Set: "t-set", Key: []string{"10.9.9.9", "1-1"}})
	if err := f.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	res, err := e.Enforce(ctx, owned("10.0.0.1 . 80"), nil)
	if err != nil || !res.Full || res.ElementsDeleted != 1 {
		t.Fatalf("after drift: %+v, %v", res, err)
	}
	if diff := cmp.Diff(StateOf(owned("10.0.0.1 . 80")).Sets["t-set"].Elements, readSet(t, f, "t-set")); diff != "" {
		t.Errorf("t-set (-want +got):\n%s", diff)
	}
}

func TestDiffRemovesStaleObjectsInOrder(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	e := NewEnforcer(f, tScope)
	v1 := owned("10.0.0.1 . 80")
	v1.Chains = append(v1.Chains, &Chain{Name: "t-target", Rules: []string{"accept"}})
	v1.Sets = append(v1.Sets, &Set{Name: "t-vmap", Type: "ipv4_addr", Value: "verdict",
		Elements: []Element{{Key: "10.0.0.1", Value: "jump t-target"}}})
	if _, err := e.Enforce(ctx, v1, nil); err != nil {
		t.Fatal(err)
	}
	res, err := e.Enforce(ctx, owned("10.0.0.1 . 80"), nil)
	if err != nil || res.ChainsDeleted != 1 || res.SetsDeleted != 1 {
		t.Fatalf("%+v, %v", res, err)
	}
	want := "flush map inet netman t-vmap\nflush chain inet netman t-target\ndelete chain inet netman t-target\ndelete map inet netman t-vmap\n"
	if got := f.LastTransaction.String(); got != want {
		t.Errorf("transaction:\n%s\nwant:\n%s", got, want)
	}
}

func TestDiffSkipsMissingBorrowedChains(t *testing.T) {
	tx := NewFake().NewTransaction()
	st := Diff(tx, NewState(), &Ruleset{Chains: []*Chain{{Name: "netout--h", Borrowed: true, Rules: []string{"jump asg--h"}}}}, tScope)
	if tx.NumOperations() != 0 || !cmp.Equal(st.MissingBorrowed, []string{"netout--h"}) {
		t.Errorf("ops %d, stats %+v", tx.NumOperations(), st)
	}
}

func TestDiffRecreatesAChangedSetDefinition(t *testing.T) {
	cur := StateOf(owned("10.0.0.1 . 80"))
	want := owned()
	want.Sets[0].Type = "ipv4_addr . inet_proto . inet_service"
	want.Sets[0].Elements = []Element{{Key: "10.0.0.1 . tcp . 80"}}
	want.Chains[0].Rules = []string{"ip daddr . meta l4proto . th dport @t-set accept"}
	tx := NewFake().NewTransaction()
	Diff(tx, cur, want, tScope)
	got := strings.Split(strings.TrimSpace(tx.String()), "\n")
	wantOps := []string{
		"flush chain inet netman t-chain",
		"delete set inet netman t-set",
		"add set inet netman t-set { type ipv4_addr . inet_proto . inet_service ; flags interval ; }",
		"add rule inet netman t-chain ip daddr . meta l4proto . th dport @t-set accept",
		"add element inet netman t-set { 10.0.0.1 . tcp . 80-80 }",
	}
	if diff := cmp.Diff(wantOps, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func readSet(t *testing.T, d Driver, name string) map[string]string {
	t.Helper()
	s, err := d.ReadSet(context.Background(), name, false)
	if err != nil || s == nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return s.Elements
}

// gen stamps rs as generation g with the given delta.
func gen(rs *Ruleset, g uint64, d *Delta) *Ruleset {
	rs.Gen, rs.Delta = g, d
	return rs
}

func TestEnforcerWritesADeltaFromItsMemory(t *testing.T) {
	ctx := context.Background()
	f := NewFake()
	e := NewEnforcer(f, tScope)
	g1, g2, g3 := NewGeneration(), NewGeneration(), NewGeneration()
	if _, err := e.Enforce(ctx, gen(owned("10.0.0.1 . 80", "10.0.0.2 . 80"), g1, nil), nil); err != nil {
		t.Fatal(err)
	}
	// From g1: one element deleted, one added, and one put that memory
	// already holds (checked against memory, not written).
	d := &Delta{From: g1, Sets: map[string]*SetDelta{"t-set": {
		Put: []Element{{Key: "10.0.0.3 . 443"}, {Key: "10.0.0.1 . 80"}}, Del: []string{"10.0.0.2 . 80"}}}}
	res, err := e.Enforce(ctx, gen(owned("10.0.0.1 . 80", "10.0.0.3 . 443"), g2, d), nil)
	if err != nil || !res.Incremental || res.Full || res.ElementsAdded != 1 || res.ElementsDeleted != 1 {
		t.Fatalf("delta: %+v, %v", res, err)
	}
	if got := f.LastTransaction.String(); got != "delete element inet netman t-set { 10.0.0.2 . 80-80 }\nadd element inet netman t-set { 10.0.0.3 . 443-443 }\n" {
		t.Errorf("transaction:\n%s", got)
	}
	// The delta is all that is looked at: elements of the Ruleset it does
	// not name are taken as unchanged.
	lie := gen(owned("10.0.0.1 . 80", "10.0.0.3 . 443", "10.0.0.9 . 1"), g3, &Delta{From: g2, Sets: map[string]*SetDelta{}})
	if res, err := e.Enforce(ctx, lie, nil); err != nil || !res.Incremental || res.Changed() {
		t.Fatalf("empty delta: %+v, %v", res, err)
	}
	// A delta from another generation than memory's is not used: the
	// elements are compared whole.
	res, err = e.Enforce(ctx, gen(owned("10.0.0.1 . 80"), NewGeneration(), &Delta{From: g1}), nil)
	if err != nil || res.Incremental || res.ElementsDeleted != 1 {
		t.Fatalf("delta from another generation: %+v, %v", res, err)
	}
	if diff := cmp.Diff(map[string]string{"10.0.0.1 . 80": ""}, readSet(t, f, "t-set")); diff != "" {
		t.Errorf("t-set (-want +got):\n%s", diff)
	}
	// After Invalidate the table is read, whatever the delta says.
	g4 := NewGeneration()
	e.Invalidate()
	res, err = e.Enforce(ctx, gen(owned("10.0.0.1 . 80"), g4, &Delta{From: g4 - 1}), nil)
	if err != nil || !res.Full || res.Incremental || res.Changed() {
		t.Fatalf("after Invalidate: %+v, %v", res, err)
	}
	// An Adjust fits the Ruleset to the table: the memory is then no
	// generation's, and the next delta is not used.
	keep := func(_ *State, w *Ruleset) *Ruleset { return w }
	g5 := NewGeneration()
	if _, err := e.Enforce(ctx, gen(owned("10.0.0.1 . 80"), g5, nil), keep); err != nil {
		t.Fatal(err)
	}
	res, err = e.Enforce(ctx, gen(owned("10.0.0.1 . 80"), NewGeneration(), &Delta{From: g5}), nil)
	if err != nil || res.Incremental {
		t.Fatalf("after an Adjust: %+v, %v", res, err)
	}
}
