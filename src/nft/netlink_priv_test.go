package nft

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"
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
		// IPv6 (dual stack): c2c's ip6 sets.
		&Set{Name: "c2c-tags6", Type: "ipv6_addr", Value: "mark", Elements: []Element{{Key: "fd73:696c:6b::aff:107", Value: Mark(0xfffe)}}},
		&Set{Name: "c2c-policies6", Type: "mark . ipv6_addr . inet_proto . inet_service", Elements: []Element{
			{Key: Key(Mark(0x10203), "fd73:696c:6b::aff:107", "tcp", "443")}}},
		&Set{Name: "c2c-policy-ranges6", Type: "mark . ipv6_addr . inet_proto . inet_service", Interval: true, Elements: []Element{
			{Key: Key(Mark(7), "fd73:696c:6b::aff:107", "udp", "1000-2000")}}},
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

// TestRuleEncodingMatchesNFT writes every rule of the planners' shapes
// twice into fresh chains: through nft, and (each rule the fast path
// encodes) over netlink. The kernel must hold the same expressions for
// both, and nft must list the netlink chain's rules exactly as written.
// The rules it does not encode are the agent's and the connection-rate
// meter's: a transaction holding one goes to nft whole.
func TestRuleEncodingMatchesNFT(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := shapes()
	rs.Merge(wrapperShapes())
	do(func() error {
		tx := k.NewTransaction()
		AddSkeleton(tx)
		Put(tx, rs)
		return k.Run(ctx, tx)
	})
	var encoded, skipped []string
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			if _, err := encodeRule(r); err != nil {
				skipped = append(skipped, r)
				continue
			}
			encoded = append(encoded, r)
		}
	}
	wantSkipped := []string{
		"ct state new update @asg--h1--rl { ip daddr . tcp dport limit rate over 100/second burst 1000 packets } jump asg--h1--rl-log",
		"ip daddr { 10.10.0.0/16, 169.254.0.0/16 } reject with icmp port-unreachable",
		"ct state new update @asg--h2--rl { ip daddr . tcp dport limit rate over 1/second } jump asg--h2--rl-log",
		"ct state new update @asg--h3--rl { ip daddr . tcp dport limit rate over 10/second burst 10 packets } reject with icmp port-unreachable",
		"meta mark . ip daddr vmap @c2c-log",
	}
	if diff := cmp.Diff(wantSkipped, skipped); diff != "" {
		t.Errorf("rules not encoded (-want +got):\n%s", diff)
	}

	tx := k.NewTransaction()
	for _, name := range []string{"x-netlink", "x-nft"} {
		tx.Add(&knftables.Chain{Name: name})
	}
	nlTx := k.NewTransaction()
	nftTx := k.NewTransaction()
	for _, r := range encoded {
		nlTx.Add(&knftables.Rule{Chain: "x-netlink", Rule: r})
		nftTx.Add(&knftables.Rule{Chain: "x-nft", Rule: r})
	}
	do(func() error { return k.Run(ctx, tx) })
	n := k.netlinkRuns.Load()
	do(func() error { return k.Run(ctx, nlTx) })
	if k.netlinkRuns.Load() != n+1 {
		t.Fatal("the rules did not go over netlink")
	}
	do(func() error { return k.runNFT(ctx, nftTx.NumOperations(), nftTx.String()) })
	t.Logf("%d rules encoded, %d left to nft", len(encoded), len(skipped))

	var got *State
	do(func() (err error) { got, err = k.Read(ctx); return err })
	var names map[string]bool
	do(func() (err error) { names, err = k.ChainNames(ctx); return err })
	if len(names) != len(got.Chains) || !names["x-netlink"] || !names["x-nft"] {
		t.Errorf("ChainNames (netlink): %d names, the listing has %d chains", len(names), len(got.Chains))
	}
	if diff := cmp.Diff(encoded, got.Chains["x-netlink"].Rules); diff != "" {
		t.Errorf("nft lists the netlink rules as (-written +listed):\n%s", diff)
	}
	// The kernel's expressions, as libnftnl prints them (every
	// expression, byteorder included, with its registers and data).
	bytecode := func(chain string) []string {
		var lines []string
		do(func() error {
			out, err := exec.Command(k.path, "--debug=netlink", "list", "chain", string(Family), TableName, chain).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			for _, l := range strings.Split(string(out), "\n") {
				if strings.HasPrefix(l, "  [") {
					lines = append(lines, l)
				} else if strings.HasPrefix(l, string(Family)+" ") {
					lines = append(lines, "rule")
				}
			}
			return nil
		})
		return lines
	}
	viaNFT, viaNL := bytecode("x-nft"), bytecode("x-netlink")
	if len(viaNFT) < 4*len(encoded) {
		t.Fatalf("nft --debug=netlink printed %d lines for %d rules", len(viaNFT), len(encoded))
	}
	if diff := cmp.Diff(viaNFT, viaNL); diff != "" {
		t.Errorf("expressions differ (-nft +netlink):\n%s", diff)
	}

	// A transaction holding a rule the fast path does not encode goes to
	// nft whole, and works.
	mixed := k.NewTransaction()
	mixed.Add(&knftables.Rule{Chain: "x-netlink", Rule: "accept"})
	mixed.Add(&knftables.Rule{Chain: "x-netlink", Rule: wantSkipped[1]})
	n = k.netlinkRuns.Load()
	do(func() error { return k.Run(ctx, mixed) })
	if k.netlinkRuns.Load() != n {
		t.Error("a transaction with a rule the fast path does not encode went over netlink")
	}
}

// wrapperShapes holds the rules of cni-wrapper-plugin's per-container
// chains that the egress shapes lack.
func wrapperShapes() *Ruleset {
	return &Ruleset{Chains: []*Chain{
		{Name: "input--h9", Rules: []string{"ct state established,related accept",
			"ip daddr 169.254.0.2 tcp dport 53 accept", "ip daddr 169.254.0.2 udp dport 53 accept", "ip daddr 10.0.16.5 tcp dport 8080 accept", Reject}},
		{Name: "overlay--h9", Rules: []string{"ct state established,related accept", "meta mark " + Mark(0xffff0000) + " accept",
			LimitedLog(1, "DENY_C2C_h9"), LimitedLog(5, "DENY_C2C_h9"), Reject}},
		{Name: "masquerade--h9", Rules: []string{`ip daddr != 10.255.0.0/16 oifname != "silk-vtep" masquerade`,
			`ip daddr != 10.240.0.0/12 oifname != "silk-vtep" masquerade`, `ip daddr != 10.0.0.0/8 oifname != "silk-vtep" masquerade`,
			`oifname != "silk-vtep" masquerade`}},
		{Name: "netout--h9", Rules: []string{"ip daddr 169.254.169.254 reject with icmp port-unreachable", "jump input--h9", "drop"}},
		// Dual stack: the IPv6 rules of the same chains.
		{Name: "input--h9-6", Rules: append(append([]string{"ct state established,related accept"}, NeighborDiscovery...),
			"ip6 daddr 2001:db8:16::5 tcp dport 8080 accept", "ip6 daddr 2001:db8:16::5 udp dport 53 accept", Reject)},
		{Name: "masquerade--h9-6", Rules: []string{`ip daddr != 10.255.0.0/16 oifname != "silk-vtep" masquerade`,
			`ip6 daddr != fd73:696c:6b::/96 oifname != "silk-vtep" masquerade`, `ip6 daddr != fd00::/8 oifname != "silk-vtep" masquerade`}},
		{Name: "netout--h9-6", Rules: []string{"ip6 daddr fd00:ec2::254 reject with icmpv6 port-unreachable", "ip6 saddr 2001:db8::/32 drop",
			"ip6 daddr . meta l4proto . th dport @egress6--ports6 accept", "ip6 daddr . icmpv6 type . icmpv6 code @egress6--icmp6 goto netout--h9-6--log",
			"ip6 daddr . meta l4proto @egress6--all6 accept", Reject}},
		{Name: "netout--h9-6--log", Rules: []string{"accept"}},
	}, Sets: []*Set{
		{Name: "egress6--ports6", Type: "ipv6_addr . inet_proto . inet_service", Interval: true},
		{Name: "egress6--icmp6", Type: "ipv6_addr . icmpv6_type . icmpv6_code", Interval: true},
		{Name: "egress6--all6", Type: "ipv6_addr . inet_proto", Interval: true},
	}}
}

// TestNetlinkManyMessages sends one batch holding a message per set for
// 600 sets (the agent's delta when one rule changes on a cell of
// containers: two messages per container): every acknowledgement must fit
// the socket's receive buffer, or the driver reports a failure for a
// batch the kernel applied.
func TestNetlinkManyMessages(t *testing.T) {
	ctx := context.Background()
	k, do := kernel(t)
	rs := &Ruleset{}
	for i := range 600 {
		rs.Sets = append(rs.Sets, &Set{Name: fmt.Sprintf("many-%d", i), Type: "ipv4_addr . inet_service"})
	}
	do(func() error {
		tx := k.NewTransaction()
		AddSkeleton(tx)
		Put(tx, rs)
		return k.Run(ctx, tx)
	})
	for i, s := range rs.Sets {
		s.Elements = []Element{{Key: Key(fmt.Sprintf("10.0.%d.%d", i/250, i%250), "443")}}
	}
	n := k.NetlinkRuns()
	do(func() error {
		tx := k.NewTransaction()
		AddElements(tx, rs)
		return k.Run(ctx, tx)
	})
	if k.NetlinkRuns() != n+1 {
		t.Fatal("the batch did not go over netlink")
	}
}
