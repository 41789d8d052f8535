package nft

import (
	"context"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// kernel returns a Kernel driver and a function running fn inside a fresh
// namespace (nft acts on the calling thread's namespace).
func kernel(tb testing.TB) (*Kernel, func(func() error)) {
	tb.Helper()
	netnstest.RequireRoot(tb)
	ns := netnstest.New(tb, "nft")
	var k *Kernel
	do := func(fn func() error) {
		tb.Helper()
		if err := ns.Do(fn); err != nil {
			tb.Fatal(err)
		}
	}
	do(func() (err error) { k, err = New(); return err })
	return k, do
}

// shapes is a ruleset holding every kind of rule and element the planners
// write, so the round trip checks each canonical form at least once.
func shapes() *Ruleset {
	rs := &Ruleset{}
	e := Egress{
		Chain: "asg--h1", Handle: "h1", Workload: "app",
		Deny: rules.DenyNetworks{Always: []netip.Prefix{netip.MustParsePrefix("10.10.0.0/16"), netip.MustParsePrefix("10.10.1.0/24")},
			Running: []netip.Prefix{netip.MustParsePrefix("169.254.0.0/16")}},
		Conn:       rules.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100},
		ASGLogging: true, DeniedLogsPerSec: 3, AcceptedUDPLogsPerSec: 100,
		OverlayAcceptAll: netip.MustParsePrefix("10.255.0.0/16"),
	}
	dst := Convert([]rules.NetOutRule{
		{Protocol: rules.TCP, Networks: []rules.IPRange{{Start: netip.MustParseAddr("10.0.0.0"), End: netip.MustParseAddr("10.255.255.255")}},
			Ports: []rules.PortRange{{Start: 80, End: 80}, {Start: 8000, End: 9000}}},
		{Protocol: rules.UDP, Networks: []rules.IPRange{{Start: netip.MustParseAddr("8.8.8.8"), End: netip.MustParseAddr("8.8.8.8")}},
			Ports: []rules.PortRange{{Start: 53, End: 53}}, Log: true},
		{Protocol: rules.ICMP, Networks: []rules.IPRange{{Start: netip.MustParseAddr("0.0.0.0"), End: netip.MustParseAddr("255.255.255.255")}},
			ICMP: &rules.ICMPInfo{Type: 255}},
		{Protocol: rules.ICMP, Networks: []rules.IPRange{{Start: netip.MustParseAddr("10.2.0.1"), End: netip.MustParseAddr("10.2.0.9")}},
			ICMP: &rules.ICMPInfo{Type: 3, Code: 255}},
		{Protocol: rules.All, Networks: []rules.IPRange{{Start: netip.MustParseAddr("192.168.1.1"), End: netip.MustParseAddr("192.168.1.254")}}},
	}, false)
	rs.Merge(e.Ruleset(dst))
	dry := e
	dry.Chain, dry.Conn, dry.ASGLogging, dry.OverlayAcceptAll, dry.Workload = "asg--h2", rules.OutConn{DryRun: true, Burst: 5, RatePerSec: 1}, false, netip.Prefix{}, "staging"
	rs.Merge(dry.Ruleset(nil))
	plain := dry
	plain.Chain, plain.Conn = "asg--h3", rules.OutConn{Limit: true, Burst: 10, RatePerSec: 10}
	rs.Merge(plain.Ruleset(nil))
	rs.Sets = append(rs.Sets,
		&Set{Name: "c2c-tags", Type: "ipv4_addr", Value: "mark", Elements: []Element{{Key: "10.255.1.2", Value: Mark(3)}}},
		&Set{Name: "c2c-policies", Type: "mark . ipv4_addr . inet_proto . inet_service", Elements: []Element{
			{Key: Key(Mark(3), "10.255.1.2", "tcp", "8080")}, {Key: Key(Mark(0xffff), "10.255.1.2", "udp", "53")}}},
		&Set{Name: "c2c-policy-ranges", Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true, Elements: []Element{
			{Key: Key(Mark(3), "10.255.1.2", "tcp", "8080")}, {Key: Key(Mark(0xffff), "10.255.1.2", "tcp", "9000-9100")},
			{Key: Key(Mark(3), "10.255.1.2", "udp", "1-65535")}}},
		&Set{Name: "c2c-log", Type: "mark . ipv4_addr", Value: "verdict", Elements: []Element{{Key: Key(Mark(3), "10.255.1.2"), Value: Jump("c2c-log--3--10.255.1.2")}}},
		// Dual stack: c2c's ip6 sets.
		&Set{Name: "c2c-tags6", Type: "ipv6_addr", Value: "mark", Elements: []Element{{Key: "fd73:696c:6b::aff:102", Value: Mark(3)}}},
		&Set{Name: "c2c-policies6", Type: "mark . ipv6_addr . inet_proto . inet_service", Elements: []Element{
			{Key: Key(Mark(3), "fd73:696c:6b::aff:102", "tcp", "8080")}}},
		&Set{Name: "c2c-policy-ranges6", Type: "mark . ipv6_addr . inet_proto . inet_service", Interval: true, Elements: []Element{
			{Key: Key(Mark(0xffff), "fd73:696c:6b::aff:102", "tcp", "9000-9100")}}},
	)
	rs.Chains = append(rs.Chains,
		&Chain{Name: "c2c-log--3--10.255.1.2", Rules: []string{
			"meta l4proto tcp ct state invalid,new,untracked log prefix " + LogPrefix("OK_0003_app-a"),
			"meta l4proto udp " + LimitedLog(100, "OK_0003_app-a")}},
		&Chain{Name: "c2c-logged", Rules: []string{"meta mark . ip daddr vmap @c2c-log", "accept"}},
		&Chain{Name: "input--h1", Rules: []string{"ct state established,related accept", "ip daddr 169.254.0.2 tcp dport 53 accept",
			"ip daddr 169.254.0.2 udp dport 53 accept", Reject}},
		&Chain{Name: "overlay--h1", Rules: []string{"ct state established,related accept", "meta mark " + Mark(0xffff0000) + " accept",
			LimitedLog(5, "DENY_C2C_h1"), Reject}},
		&Chain{Name: "masquerade--h1", Rules: []string{"ip daddr != 10.255.0.0/16 oifname != \"silk-vtep\" masquerade"}},
		&Chain{Name: "masquerade--h2", Rules: []string{"oifname != \"silk-vtep\" masquerade"}},
	)
	return rs
}

// dispatch is one container's entries in the skeleton's maps.
func dispatch() *Ruleset {
	sk := Skeleton()
	set := func(name string, els ...Element) *Set {
		s := *sk.Set(name)
		s.Elements = els
		return &s
	}
	return &Ruleset{Sets: []*Set{
		set(MapInput, Element{Key: "10.255.1.2", Value: Jump("input--h1")}),
		set(MapNetOut, Element{Key: Key("10.255.1.2", Quote("eth0")), Value: Jump("asg--h1")}),
		set(SetOverlayEgress, Element{Key: Key("10.255.1.2", Quote("silk-vtep"))}),
		set(MapOverlay, Element{Key: "10.255.1.2", Value: Jump("overlay--h1")}),
		set(MapMasquerade, Element{Key: "10.255.1.2", Value: Jump("masquerade--h1")}),
		set(MapPortMappings, Element{Key: Key("10.0.0.5", "61000"), Value: Key("10.255.1.2", "8080")}),
		set(MapIngressMarks, Element{Key: Key("10.0.0.5", Quote("eth0"), "61000"), Value: Mark(0xffff0000)}),
	}}
}

// TestRoundTrip writes every shape through the real nft and reads it back:
// the State must equal what was written, string for string (so a diff
// against the kernel finds nothing to do), and a second enforce writes
// nothing.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := shapes()
	all := PrefixScope(nil, "c2c-", "asg--", "input--", "overlay--", "masquerade--")
	e := NewEnforcer(k, all)
	do(func() error {
		tx := k.NewTransaction()
		AddSkeleton(tx)
		Put(tx, rs)
		AddElements(tx, dispatch())
		return k.Run(ctx, tx)
	})
	var st *State
	do(func() (err error) { st, err = k.Read(ctx); return err })
	want := StateOf(Skeleton())
	want.Apply(rs)
	for _, s := range dispatch().Sets {
		for _, el := range s.Elements {
			want.Sets[s.Name].Elements[el.Key] = el.Value
		}
	}
	want.Chains[ChainC2C].Rules = nil
	if diff := cmp.Diff(want.Ruleset().String(), st.Ruleset().String()); diff != "" {
		t.Fatalf("read back (-written +read):\n%s", diff)
	}
	for n, c := range st.Chains {
		if c.Base != (Skeleton().Chain(n) != nil && Skeleton().Chain(n).Base != nil) {
			t.Errorf("chain %s: base %t", n, c.Base)
		}
	}
	var res Result
	do(func() (err error) { res, err = e.Enforce(ctx, rs, nil); return err })
	if !res.Full || res.Changed() {
		t.Errorf("enforce over an equal table: %+v, want a full read and no change", res)
	}
}

// TestDiffOnKernel runs the diff's harder cases through the real nft:
// changed map values, overlapping interval elements replaced in one
// transaction, a set whose definition changed, stale chains referenced
// from stale maps, and reads the result back.
func TestDiffOnKernel(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	scope := PrefixScope(nil, "t-")
	e := NewEnforcer(k, scope)
	v1 := &Ruleset{
		Sets: []*Set{
			{Name: "t-ports", Type: "ipv4_addr . inet_service", Interval: true, Elements: []Element{{Key: "10.0.0.1 . 80-90"}, {Key: "10.0.0.2 . 1-100"}}},
			{Name: "t-vmap", Type: "ipv4_addr", Value: "verdict", Elements: []Element{{Key: "10.0.0.1", Value: "jump t-a"}, {Key: "10.0.0.2", Value: "jump t-b"}}},
			{Name: "t-stale", Type: "ipv4_addr", Value: "verdict", Elements: []Element{{Key: "10.0.0.9", Value: "jump t-gone"}}},
			{Name: "t-def", Type: "ipv4_addr", Elements: []Element{{Key: "10.0.0.1"}}},
		},
		Chains: []*Chain{
			{Name: "t-a", Rules: []string{"accept"}},
			{Name: "t-b", Rules: []string{"drop"}},
			{Name: "t-gone", Rules: []string{"jump t-b"}},
			{Name: "t-main", Rules: []string{"ip daddr . tcp dport @t-ports accept", "ip daddr vmap @t-vmap", "ip daddr vmap @t-stale", "ip daddr @t-def drop"}},
		},
	}
	v2 := &Ruleset{
		Sets: []*Set{
			{Name: "t-ports", Type: "ipv4_addr . inet_service", Interval: true, Elements: []Element{{Key: "10.0.0.1 . 85-95"}, {Key: "10.0.0.2 . 1-100"}}},
			{Name: "t-vmap", Type: "ipv4_addr", Value: "verdict", Elements: []Element{{Key: "10.0.0.1", Value: "jump t-b"}, {Key: "10.0.0.3", Value: "jump t-a"}}},
			{Name: "t-def", Type: "ipv4_addr", Interval: true, Elements: []Element{{Key: "10.0.0.0/24"}}},
		},
		Chains: []*Chain{
			{Name: "t-a", Rules: []string{"accept"}},
			{Name: "t-b", Rules: []string{"drop"}},
			{Name: "t-main", Rules: []string{"ip daddr . tcp dport @t-ports accept", "ip daddr vmap @t-vmap", "ip daddr @t-def drop"}},
		},
	}
	for i, want := range []*Ruleset{v1, v2, v1} {
		var res Result
		do(func() (err error) { res, err = e.Enforce(ctx, want, nil); return err })
		if i > 0 && res.Full {
			t.Errorf("step %d: full resync, want a delta", i)
		}
		var st *State
		do(func() (err error) { st, err = k.Read(ctx); return err })
		got := st.Scoped(scope)
		if diff := cmp.Diff(StateOf(want).Ruleset().String(), got.Ruleset().String()); diff != "" {
			t.Fatalf("step %d (-want +kernel):\n%s", i, diff)
		}
	}
}

// TestConcurrentWritersWriteTheSkeletonOnce starts two enforcers of
// disjoint scopes (the agent's c2c and ASG writers) on a cell without the
// table, at the same time, many times: each finds the skeleton missing and
// writes it, and the base chains must end with their rules once, not once
// per writer (a restarted agent then found them twice and rewrote them).
func TestConcurrentWritersWriteTheSkeletonOnce(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	ns := netnstest.New(t, "nft")
	var k *Kernel
	if err := ns.Do(func() (err error) { k, err = New(); return err }); err != nil {
		t.Fatal(err)
	}
	c2cRules := &Ruleset{Chains: []*Chain{{Name: ChainC2C, Borrowed: true, Rules: []string{"accept"}}}}
	asgRules := &Ruleset{Chains: []*Chain{{Name: "asg--h1", Rules: []string{"reject"}}}}
	for round := 0; round < 20; round++ {
		writers := []*Enforcer{NewEnforcer(k, PrefixScope([]string{ChainC2C})), NewEnforcer(k, PrefixScope(nil, "asg--"))}
		errs := make(chan error, len(writers))
		for i, e := range writers {
			want := []*Ruleset{c2cRules, asgRules}[i]
			go func() {
				errs <- ns.Do(func() error { _, err := e.Enforce(ctx, want, nil); return err })
			}()
		}
		for range writers {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		var st *State
		if err := ns.Do(func() (err error) { st, err = k.Read(ctx); return err }); err != nil {
			t.Fatal(err)
		}
		for _, c := range Skeleton().Chains {
			if c.Base != nil && !slices.Equal(st.Chains[c.Name].Rules, c.Rules) {
				t.Fatalf("round %d: chain %s holds %q, want %q", round, c.Name, st.Chains[c.Name].Rules, c.Rules)
			}
		}
		if err := ns.Do(func() error { tx := k.NewTransaction(); Delete(tx); return k.Run(ctx, tx) }); err != nil {
			t.Fatal(err)
		}
	}
}
