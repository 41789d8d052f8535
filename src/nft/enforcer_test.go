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
