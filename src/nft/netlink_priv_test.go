package nft

import (
	"context"
	"errors"
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
	do(func() error {
		tx := k.NewTransaction()
		AddSkeleton(tx)
		Put(tx, rs)
		return k.Run(ctx, tx)
	})
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
