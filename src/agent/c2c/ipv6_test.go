package c2c

import (
	"context"
	"slices"

	"github.com/netman-release/netman/src/nft"
	"path/filepath"
	"sigs.k8s.io/knftables"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/golden"
)

var net6 = overlay6.MustParse(overlay6.DefaultNetwork)

// dual returns in with dual stack on.
func dual(in Inputs) Inputs {
	in.IPv6 = net6
	return in
}

// goldenChains6 compares a PlanChains6 result, as ip6tables-save lists
// it, with testdata/ip6-<name>.rules.
func goldenChains6(t *testing.T, name string, c Chains) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", "ip6-"+name+".rules"), []byte(chainsText(c)))
}

// TestPlanChains6Golden: the ip6tables twin of TestPlanGolden's cases and
// of the per-destination chains.
func TestPlanChains6Golden(t *testing.T) {
	cases := []struct {
		name   string
		in     Inputs
		perDst bool
	}{
		{"empty", Inputs{}, false},
		{"containers-no-policies", Inputs{Containers: cell}, false},
		{"policies", Inputs{Containers: cell, Policies: policies}, false},
		{"policies-logging", Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100}, false},
		{"ingress", Inputs{Containers: cell, Policies: policies[:1], IngressTag: "FFFF"}, false},
		{"disabled-policy", Inputs{Containers: cell, Policies: policies[:1], DisableNetworkPolicy: true, OverlayNetwork: "10.255.7.7/16"}, false},
		{"per-destination-chains", Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100, IngressTag: "FFFF"}, true},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := PlanChains6(dual(tt.in), tt.perDst)
			if err != nil {
				t.Fatal(err)
			}
			goldenChains6(t, tt.name, c)
		})
	}
}

// TestDualStackLeavesIPv4PlanUnchanged: dual stack changes nothing in the
// iptables plan, and an IPv4-only cell plans no ip6tables rules.
func TestDualStackLeavesIPv4PlanUnchanged(t *testing.T) {
	in := Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100, IngressTag: "FFFF"}
	for _, perDst := range []bool{false, true} {
		v4, err := PlanChains(in, nil, perDst)
		if err != nil {
			t.Fatal(err)
		}
		both, err := PlanChains(dual(in), nil, perDst)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(v4, both); diff != "" {
			t.Errorf("perDst=%v: IPv4 plan changed with dual stack (-v4 +dual):\n%s", perDst, diff)
		}
		six, err := PlanChains6(in, perDst)
		if err != nil {
			t.Fatal(err)
		}
		if six.Size() != 0 {
			t.Errorf("perDst=%v: IPv4-only cell plans %d ip6tables rules", perDst, six.Size())
		}
	}
}

// TestPlanChains6IsTheIPv4PlanMapped: each ip6tables rule is the IPv4
// rule at the same place with every container address mapped to its IPv6
// address (and /32 to /128): the same policies, the same order.
func TestPlanChains6IsTheIPv4PlanMapped(t *testing.T) {
	in := dual(Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100, IngressTag: "FFFF"})
	v4, err := PlanChains(in, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	v6, err := PlanChains6(in, false)
	if err != nil {
		t.Fatal(err)
	}
	mapped := make([]iptables.Rule, 0, len(v4.Main))
	for _, r := range v4.Main {
		s := string(r)
		for _, c := range cell {
			s = strings.ReplaceAll(s, " "+c.IP+"/32 ", " "+net6.Addr(mustAddr(c.IP)).String()+"/128 ")
		}
		mapped = append(mapped, iptables.Rule(s))
	}
	// Order may differ (both are sorted by address text); compare as sets
	// of rules with their counts, and check the IPv6 list's own order is
	// the planner's (sources before destinations before ingress).
	count := func(rs []iptables.Rule) map[iptables.Rule]int {
		m := map[iptables.Rule]int{}
		for _, r := range rs {
			m[r]++
		}
		return m
	}
	if diff := cmp.Diff(count(mapped), count(v6.Main)); diff != "" {
		t.Errorf("ip6tables rules are not the IPv4 rules mapped (-want +got):\n%s", diff)
	}
	kind := func(r iptables.Rule) int {
		switch {
		case strings.Contains(string(r), "MARK"):
			return 0
		case strings.Contains(string(r), "0xffff "), strings.HasSuffix(string(r), "0xffff -j ACCEPT"):
			return 2
		}
		return 1
	}
	for i := 1; i < len(v6.Main); i++ {
		if kind(v6.Main[i]) < kind(v6.Main[i-1]) {
			t.Errorf("rule %d out of the planner's order: %s after %s", i, v6.Main[i], v6.Main[i-1])
		}
	}
}

// TestPlanNFTDualStackGolden: the nftables plan of TestPlanNFTGolden's
// cases on a dual-stack cell, as `nft list` prints it.
func TestPlanNFTDualStackGolden(t *testing.T) {
	for _, tt := range nftCases {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := PlanNFT(dual(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			goldenNFT(t, "nft6-"+tt.name, rs)
		})
	}
}

// TestDualStackVerdicts: on a dual-stack cell, for every packet of
// TestPlanNFTVerdictsMatchIPTables' probes sent to and from the
// containers' IPv6 addresses, the nftables plan decides what the iptables
// plan decides for the same packet over IPv4 (policies apply to both
// families), and the ip6tables plan does for a sample of them (it is the
// IPv4 plan mapped, TestPlanChains6IsTheIPv4PlanMapped, so a sample
// guards the interpreter's IPv6 shapes without tripling the test's time).
func TestDualStackVerdicts(t *testing.T) {
	big := bigInputs(4, 2)
	big.Policies = append(big.Policies, pol("app-0001", "0002", "app-0002", "0003", "tcp", 8000, 8005), pol("app-0001", "0002", "app-0002", "0003", "udp", 1, 65535))
	big.Logging, big.AcceptedUDPLogsPerSec = true, 10
	cases := append(append([]struct {
		name string
		in   Inputs
	}{}, nftCases...), struct {
		name string
		in   Inputs
	}{"big-overlapping-ranges-logging", big})
	strs := func(rs []iptables.Rule) []string {
		out := make([]string, len(rs))
		for i, r := range rs {
			out[i] = string(r)
		}
		return out
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			in := dual(tt.in)
			v4, err := Plan(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			v6, err := PlanChains6(in, false)
			if err != nil {
				t.Fatal(err)
			}
			rs, err := PlanNFT(in, nil)
			if err != nil {
				t.Fatal(err)
			}
			rules4, rules6 := strs(v4), strs(v6.Main)
			addrs := []string{"10.255.200.1", "10.255.200.2"} // not local
			for _, c := range in.Containers {
				addrs = append(addrs, c.IP)
			}
			var ports []int
			for _, p := range in.Policies {
				ports = append(ports, p.Destination.Start-1, p.Destination.Start, p.Destination.End, p.Destination.End+1)
			}
			ports = append(ports, 8080, 9090, 1, 65535)
			slices.Sort(ports)
			ports = slices.Compact(ports)
			n, accepted := 0, 0
			for _, s := range addrs {
				for _, d := range addrs {
					src4, dst4 := mustAddr(s), mustAddr(d)
					src6, dst6 := net6.Addr(src4), net6.Addr(dst4)
					for _, m := range []uint32{0, 1, 2, 3, 4, 0xffff} {
						for _, proto := range []string{"tcp", "udp"} {
							for _, port := range ports {
								want := iptablesVerdict(rules4, src4, dst4, m, proto, port)
								nft6 := nftVerdict(rs, src6, dst6, m, proto, port)
								ip6 := want
								if n%7 == 0 {
									ip6 = iptablesVerdict(rules6, src6, dst6, m, proto, port)
								}
								if ip6 != want || nft6 != want {
									t.Fatalf("%s → %s:%d/%s mark %#x: iptables %+v, ip6tables %+v, nft ip6 %+v", s, d, port, proto, m, want, ip6, nft6)
								}
								if want.accept {
									accepted++
								}
								n++
							}
						}
					}
				}
			}
			if len(in.Policies) > 0 && !in.DisableNetworkPolicy && accepted == 0 {
				t.Fatal("no probe was accepted: the probes test nothing")
			}
			t.Logf("%d packets agree (%d accepted)", n, accepted)
		})
	}
}

// TestNFTDualStackOneChangeIsTwoElements: on a dual-stack cell, adding a
// policy writes its element into c2c-policies and its twin into
// c2c-policies6 (the planner's Delta, not a diff of everything), and
// removing it deletes both.
func TestNFTDualStackOneChangeIsTwoElements(t *testing.T) {
	ctx := context.Background()
	f := nft.NewFake()
	e := NewNFTEnforcer(f)
	p := NewNFTPlanner()
	in := dual(bigInputs(40, 40))
	base, err := p.Plan(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enforce(ctx, base, nil); err != nil {
		t.Fatal(err)
	}
	extra := in
	extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
	want := map[bool]string{
		true:  "add element inet netman c2c-policies { 0x00000001 . 10.255.1.3 . udp . 9999 }\nadd element inet netman c2c-policies6 { 0x00000001 . fd73:696c:6b::aff:103 . udp . 9999 }\n",
		false: "delete element inet netman c2c-policies { 0x00000001 . 10.255.1.3 . udp . 9999 }\ndelete element inet netman c2c-policies6 { 0x00000001 . fd73:696c:6b::aff:103 . udp . 9999 }\n",
	}
	for i, w := range []Inputs{extra, in} {
		rs, err := p.Plan(w, nil)
		if err != nil {
			t.Fatal(err)
		}
		if rs.Delta == nil {
			t.Fatalf("change %d: no Delta", i)
		}
		res, err := e.Enforce(ctx, rs, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Full || !res.Incremental || res.ElementsAdded+res.ElementsDeleted != 2 || res.Rules != 0 {
			t.Errorf("change %d: %+v", i, res)
		}
		if diff := cmp.Diff(want[i == 0], sortedLines(f.LastTransaction.String())); diff != "" {
			t.Errorf("change %d transaction (-want +got):\n%s", i, diff)
		}
	}
}

// TestNFTDualStackRepairsDrift: an IPv6 element deleted by hand is put
// back by the next full enforce (the agent's drift check).
func TestNFTDualStackRepairsDrift(t *testing.T) {
	ctx := context.Background()
	f := nft.NewFake()
	e := NewNFTEnforcer(f)
	rs, err := PlanNFT(dual(Inputs{Containers: cell, Policies: policies}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enforce(ctx, rs, nil); err != nil {
		t.Fatal(err)
	}
	el := rs.Set(NFTPolicies6).Elements[0]
	tx := f.NewTransaction()
	tx.Delete(&knftables.Element{Set: NFTPolicies6, Key: strings.Split(el.Key, " . ")})
	if err := f.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	e.Invalidate()
	res, err := e.Enforce(ctx, rs, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full || res.ElementsAdded != 1 {
		t.Errorf("repair: %+v", res)
	}
	for _, name := range []string{NFTTags6, NFTPolicies6, NFTPolicyRanges6} {
		got := f.Ruleset().Set(name)
		if got == nil {
			t.Fatalf("no set %s after repair", name)
		}
		if diff := cmp.Diff(rs.Set(name).Elements, got.Elements, cmpopts.SortSlices(func(a, b nft.Element) bool { return a.Key < b.Key })); diff != "" {
			t.Errorf("%s after repair (-want +got):\n%s", name, diff)
		}
	}
}

func sortedLines(s string) string {
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	slices.Sort(lines)
	return strings.Join(lines, "\n") + "\n"
}
