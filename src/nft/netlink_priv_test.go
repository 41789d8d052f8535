package nft

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestNetlinkElements writes every shape of element the planners and the
// wrapper write through the netlink fast path (element-only transactions
// after the sets were defined through nft), reads the table back through
// nft's listing and expects exactly what nft itself would have written;
// then deletes them the same way.
func TestNetlinkElements(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := shapes()
	loadWithSkeleton(t, k, do, rs)
	var before *State
	do(func() (err error) { before, err = k.Read(ctx); return err })

	more := dispatch()
	more.Sets = append(more.Sets,
		&Set{Name: "c2c-tags", Type: "ipv4_addr", Value: "mark", Elements: []Element{{Key: "10.255.1.7", Value: Mark(0xfffe)}}},
		&Set{Name: "c2c-policies", Type: "mark . ipv4_addr . inet_proto . inet_service", Elements: []Element{
			{Key: Key(Mark(0x10203), "10.255.1.7", "tcp", "443")}, {Key: Key(Mark(0xfffe), "10.255.1.8", "132", "65535")}}},
		&Set{Name: "c2c-policy-ranges", Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true, Elements: []Element{
			{Key: Key(Mark(0x10203), "10.255.1.7", "tcp", "443")}, {Key: Key(Mark(7), "10.255.1.7", "udp", "1000-2000")},
			{Key: Key(Mark(7), "10.255.1.8", "132", "1-65535")}}},
		&Set{Name: "c2c-log", Type: "mark . ipv4_addr", Value: "verdict", Elements: []Element{{Key: Key(Mark(0x10203), "10.255.1.7"), Value: "goto c2c-log--3--10.255.1.2"}}},
	)
	n := k.netlinkRuns.Load()
	do(func() error {
		tx := k.NewTransaction()
		AddElements(tx, more)
		return k.Run(ctx, tx)
	})
	if k.netlinkRuns.Load() != n+1 {
		t.Fatal("the element-only transaction did not go over netlink")
	}
	want := before.Ruleset()
	wantSt := StateOf(want)
	for _, s := range more.Sets {
		for _, el := range s.Elements {
			wantSt.Sets[s.Name].Elements[el.Key] = el.Value
		}
	}
	var got *State
	do(func() (err error) { got, err = k.Read(ctx); return err })
	if diff := cmp.Diff(wantSt.Ruleset().String(), got.Ruleset().String()); diff != "" {
		t.Fatalf("after adding over netlink (-want +kernel):\n%s", diff)
	}

	do(func() error {
		tx := k.NewTransaction()
		DeleteElements(tx, more)
		return k.Run(ctx, tx)
	})
	if k.netlinkRuns.Load() != n+2 {
		t.Fatal("the element deletions did not go over netlink")
	}
	do(func() (err error) { got, err = k.Read(ctx); return err })
	if diff := cmp.Diff(before.Ruleset().String(), got.Ruleset().String()); diff != "" {
		t.Fatalf("after deleting over netlink (-want +kernel):\n%s", diff)
	}

	// A deletion of an element that is not there is rejected, as by nft,
	// and leaves the table alone.
	var err error
	do(func() error {
		tx := k.NewTransaction()
		DeleteElements(tx, more)
		err = k.Run(ctx, tx)
		return nil
	})
	var re *RunError
	if !asRunError(err, &re) {
		t.Fatalf("deleting absent elements: %v, want a RunError", err)
	}
	do(func() (err error) { got, err = k.Read(ctx); return err })
	if diff := cmp.Diff(before.Ruleset().String(), got.Ruleset().String()); diff != "" {
		t.Fatalf("after a rejected batch (-want +kernel):\n%s", diff)
	}
}

func asRunError(err error, re **RunError) bool { return errors.As(err, re) }

// TestBulkLoad enforces a first sync of more than maxNetlinkElements elements
// of every c2c shape (a hash set, an interval set, a map of marks, a
// verdict map): the table, sets and chains go through nft, the elements
// over netlink in batches, and the table reads back exactly the Ruleset.
// A resync putting back thousands of elements into sets that exist is one
// nft transaction, all or nothing.
func TestBulkLoad(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := &Ruleset{
		Chains: []*Chain{{Name: "t-chain", Rules: []string{"meta mark . ip daddr vmap @t-vmap"}}, {Name: "t-target", Rules: []string{"accept"}}},
		Sets: []*Set{
			{Name: "t-hash", Type: "mark . ipv4_addr . inet_proto . inet_service"},
			{Name: "t-ranges", Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true},
			{Name: "t-marks", Type: "ipv4_addr", Value: "mark"},
			{Name: "t-vmap", Type: "mark . ipv4_addr", Value: "verdict"},
		},
	}
	for i := 0; i < 1500; i++ {
		ip := Addr(a4(0x0aff0000 + uint32(i)))
		rs.Sets[0].Elements = append(rs.Sets[0].Elements, Element{Key: Key(Mark(uint32(i)), ip, "tcp", "8080")})
		rs.Sets[1].Elements = append(rs.Sets[1].Elements, Element{Key: Key(Mark(uint32(i)), ip, "udp", "1000-2000")})
		rs.Sets[2].Elements = append(rs.Sets[2].Elements, Element{Key: ip, Value: Mark(uint32(i) + 1)})
		rs.Sets[3].Elements = append(rs.Sets[3].Elements, Element{Key: Key(Mark(uint32(i)), ip), Value: "jump t-target"})
	}
	e := NewEnforcer(k, tScope)
	n := k.netlinkRuns.Load()
	do(func() error { _, err := e.Enforce(ctx, rs, nil); return err })
	if k.netlinkRuns.Load() == n {
		t.Error("the first sync sent no element over netlink")
	}
	check := func(when string) {
		t.Helper()
		var got *State
		do(func() (err error) { got, err = k.Read(ctx); return err })
		for _, s := range rs.Sets {
			if diff := cmp.Diff(StateOf(rs).Sets[s.Name].Elements, got.Sets[s.Name].Elements); diff != "" {
				t.Errorf("%s: %s (-want +kernel):\n%s", when, s.Name, diff)
			}
		}
	}
	check("first sync")

	// By hand: most of the hash set gone. The drift repair puts it back.
	do(func() error {
		tx := k.NewTransaction()
		tx.Flush(rs.Sets[0].object())
		tx.Delete(rs.Sets[2].element(rs.Sets[2].Elements[0]))
		return k.Run(ctx, tx)
	})
	e.Invalidate()
	n = k.netlinkRuns.Load()
	var res Result
	do(func() (err error) { res, err = e.Enforce(ctx, rs, nil); return err })
	if !res.Full || res.ElementsAdded != 1501 || k.netlinkRuns.Load() != n {
		t.Errorf("repair: %+v, %d netlink runs", res, k.netlinkRuns.Load()-n)
	}
	check("repair")
}

// TestReadManyUndecodableSets reads a table holding more sets netlink
// cannot decode (non-concatenated interval sets, verdict maps) than Read
// lists one by one, beside a hash set it decodes: every set's elements
// come from the one listing of the table, and equal what was written.
// With few of them (TestNetlinkElements, TestBulkLoad) they are listed
// set by set and the rest read over netlink.
func TestReadManyUndecodableSets(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := &Ruleset{Sets: []*Set{{Name: "t-hash", Type: "mark . ipv4_addr . inet_proto . inet_service",
		Elements: []Element{{Key: Key(Mark(1), "10.0.0.1", "tcp", "80")}}}}}
	for i := 0; i <= maxListedSets; i++ {
		rs.Sets = append(rs.Sets, &Set{Name: fmt.Sprintf("t-range-%d", i), Type: "ipv4_addr", Interval: true,
			Elements: []Element{{Key: "10.0.0.0/8"}, {Key: fmt.Sprintf("192.168.%d.1-192.168.%d.9", i, i)}}})
	}
	loadWithSkeleton(t, k, do, rs)
	var got *State
	do(func() (err error) { got, err = k.Read(ctx); return err })
	want := StateOf(rs)
	for name, s := range want.Sets {
		if diff := cmp.Diff(s.Elements, got.Sets[name].Elements); diff != "" {
			t.Errorf("%s (-want +read):\n%s", name, diff)
		}
	}
}

// loadWithSkeleton writes the skeleton and rs's objects through nft.
func loadWithSkeleton(t *testing.T, k *Kernel, do func(func() error), rs *Ruleset) {
	t.Helper()
	do(func() error {
		tx := k.NewTransaction()
		AddSkeleton(tx)
		Put(tx, rs)
		return k.Run(context.Background(), tx)
	})
}
