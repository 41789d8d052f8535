package c2c

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
)

func TestPlannedEntriesNameWhatThePlanAccepts(t *testing.T) {
	in := Inputs{Containers: cell, Policies: policies}
	got := PlannedEntries(in)
	wantSrc := []SourceEntry{
		{IP: "10.255.1.10", AppID: "app-c", Tag: "0003"},
		{IP: "10.255.1.2", AppID: "app-a", Tag: "0001"},
		{IP: "10.255.1.3", AppID: "app-a", Tag: "0001"},
		{IP: "10.255.1.4", AppID: "app-b", Tag: "0002"},
	}
	if diff := cmp.Diff(wantSrc, got.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	// Every destination entry is one ACCEPT rule of the plan, and every
	// ACCEPT rule of the plan (but ingress) is one entry.
	rules, err := Plan(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	var accepts []iptables.Rule
	for _, r := range rules {
		if strings.HasSuffix(string(r), " -j ACCEPT") {
			accepts = append(accepts, r)
		}
	}
	var fromEntries []iptables.Rule
	for _, d := range got.Destinations {
		fromEntries = append(fromEntries, Allow(netip.MustParseAddr(d.IP), d.Protocol, d.Start, d.End, d.SourceTag, d.SourceID, d.AppID))
	}
	slices.Sort(accepts)
	slices.Sort(fromEntries)
	if diff := cmp.Diff(accepts, fromEntries); diff != "" {
		t.Errorf("accept rules of the plan (-) and of the entries (+):\n%s", diff)
	}
	if len(got.Destinations) != 6 {
		t.Errorf("%d destination entries, want 6 (b: tcp and udp from a; a1, a2: from d and c)", len(got.Destinations))
	}
}

func TestPlannedEntriesDropWhatThePlanDrops(t *testing.T) {
	cs := []Container{{Handle: "h", IP: "not-an-ip", AppID: "a"}, {Handle: "g", IP: "10.255.1.9", AppID: "b"}}
	ps := []Policy{pol("a", "0001", "b", "0002", "icmp", 0, 0), pol("b", "0002", "a", "0001", "tcp", 80, 80)}
	got := PlannedEntries(Inputs{Containers: cs, Policies: ps})
	want := Entries{Sources: []SourceEntry{{IP: "10.255.1.9", AppID: "b", Tag: "0002"}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("entries (-want +got):\n%s", diff)
	}
	if e := PlannedEntries(Inputs{Containers: cell, Policies: policies, DisableNetworkPolicy: true, OverlayNetwork: "10.255.0.0/16"}); len(e.Sources)+len(e.Destinations) != 0 {
		t.Errorf("with policy disabled: %+v, want nothing (the overlay accept-all rule stands for all)", e)
	}
}
