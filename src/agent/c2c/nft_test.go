package c2c

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// goldenNFT compares a ruleset's `nft list` form with testdata/<name>.golden.
func goldenNFT(t *testing.T, name string, rs *nft.Ruleset) {
	t.Helper()
	golden.Check(t, filepath.Join("testdata", name+".golden"), []byte(rs.String()))
}

// nftCases are TestPlanGolden's cases.
var nftCases = []struct {
	name string
	in   Inputs
}{
	{"empty", Inputs{}},
	{"containers-no-policies", Inputs{Containers: cell}},
	{"policies", Inputs{Containers: cell, Policies: policies}},
	{"policies-logging", Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100}},
	{"ingress", Inputs{Containers: cell, Policies: policies[:1], IngressTag: "FFFF"}},
	{"disabled-policy", Inputs{Containers: cell, Policies: policies[:1], DisableNetworkPolicy: true, OverlayNetwork: "10.255.7.7/16"}},
}

func TestPlanNFTGolden(t *testing.T) {
	for _, tt := range nftCases {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := PlanNFT(tt.in, nil)
			if err != nil {
				t.Fatal(err)
			}
			goldenNFT(t, "nft-"+tt.name, rs)
		})
	}
}

// verdict is what one of the two data planes does with a forwarded packet.
type verdict struct {
	mark   uint32 // the mark the packet leaves the c2c rules with
	accept bool
	log    string // OK_ prefix logged, "" for none
}

// iptablesVerdict interprets the planned iptables rules (their shapes are
// the planner's own: MARK, LOG and ACCEPT rules, the accept-all) for a
// packet from src (or arriving with mark when src is not local).
func iptablesVerdict(rules []string, src, dst netip.Addr, mark uint32, proto string, port int) verdict {
	v := verdict{mark: mark}
	for _, r := range rules {
		if m := ipMarkRe.FindStringSubmatch(r); m != nil {
			if m[1] == src.String() {
				v.mark = hexU32(m[2])
			}
			continue
		}
		if m := ipAllRe.FindStringSubmatch(r); m != nil {
			p := netip.MustParsePrefix(m[1])
			if p.Contains(src) && p.Contains(dst) {
				v.accept = true
				return v
			}
			continue
		}
		m := ipMatchRe.FindStringSubmatch(r)
		if m == nil {
			panic("unknown rule shape: " + r)
		}
		lo, _ := strconv.Atoi(m[3])
		hi := lo
		if m[4] != "" {
			hi, _ = strconv.Atoi(m[4])
		}
		if m[1] != dst.String() || m[2] != proto || port < lo || port > hi || hexU32(m[5]) != v.mark {
			continue
		}
		if l := ipLogRe.FindStringSubmatch(r); l != nil {
			if v.log == "" {
				v.log = l[1]
			}
			continue
		}
		v.accept = true
		return v
	}
	v.log = ""
	return v
}

var (
	ipMarkRe  = regexp.MustCompile(`^-s (\S+)/(?:32|128) .* -j MARK --set-xmark 0x([0-9a-f]+)/0xffffffff$`)
	ipAllRe   = regexp.MustCompile(`^-s (\S+) -d \S+ -j ACCEPT$`)
	ipMatchRe = regexp.MustCompile(`^-d (\S+)/(?:32|128) -p (\w+) -m \w+ --dport (\d+)(?::(\d+))? -m mark --mark 0x([0-9a-f]+) `)
	ipLogRe   = regexp.MustCompile(`--log-prefix "(.*) "$`)
)

func hexU32(s string) uint32 {
	v, _ := strconv.ParseUint(strings.TrimPrefix(s, "0x"), 16, 32)
	return uint32(v)
}

// nftVerdict evaluates the planned nft ruleset's c2c chain for the same
// packet: the tag map, the accept-all, the two policy sets in order, the
// log map — those of the packet's family (an IPv6 packet meets only the ip6
// rules and sets).
func nftVerdict(rs *nft.Ruleset, src, dst netip.Addr, mark uint32, proto string, port int) verdict {
	v := verdict{mark: mark}
	six := dst.Is6()
	tags, logName := NFTTags, NFTLog
	if six {
		tags, logName = NFTTags6, NFTLog6
	}
	for _, r := range rs.Chain(nft.ChainC2C).Rules {
		if strings.Contains(r, "ip6 ") != six {
			continue
		}
		switch {
		case strings.HasPrefix(r, "ip saddr "), strings.HasPrefix(r, "ip6 saddr "):
			p := netip.MustParsePrefix(strings.Fields(r)[2])
			if p.Contains(src) && p.Contains(dst) {
				v.accept = true
				return v
			}
		case strings.HasPrefix(r, "meta mark set "):
			for _, e := range rs.Set(tags).Elements {
				if e.Key == src.String() {
					v.mark = hexU32(e.Value)
				}
			}
		default:
			// "meta mark . ip daddr . meta l4proto . th dport @SET accept|jump ..."
			_, set, _ := strings.Cut(r, "@")
			set, _, _ = strings.Cut(set, " ")
			for _, e := range rs.Set(set).Elements {
				f := strings.Split(e.Key, " . ")
				lo, hi, _ := strings.Cut(f[3], "-")
				l, _ := strconv.Atoi(lo)
				h := l
				if hi != "" {
					h, _ = strconv.Atoi(hi)
				}
				if hexU32(f[0]) == v.mark && f[1] == dst.String() && f[2] == proto && port >= l && port <= h {
					v.accept = true
				}
			}
			if !v.accept {
				continue
			}
			if logMap := rs.Set(logName); logMap != nil {
				for _, e := range logMap.Elements {
					if e.Key == nft.Key(nft.Mark(v.mark), dst.String()) {
						target := rs.Chain(strings.TrimPrefix(e.Value, "jump "))
						v.log = ipLogRe.FindStringSubmatch(strings.Replace(target.Rules[0], "log prefix", "--log-prefix", 1))[1]
					}
				}
			}
			return v
		}
	}
	return v
}

// TestPlanNFTVerdictsMatchIPTables probes both plans of every golden case
// (and a bigger cell) with packets at and around every policy's ports,
// from every local source and with foreign marks, and checks the two data
// planes mark, accept and log alike.
func TestPlanNFTVerdictsMatchIPTables(t *testing.T) {
	cases := append([]struct {
		name string
		in   Inputs
	}{}, nftCases...)
	big := bigInputs(6, 3)
	big.Policies = append(big.Policies, pol("app-0001", "0002", "app-0002", "0003", "tcp", 8000, 8005), pol("app-0001", "0002", "app-0002", "0003", "udp", 1, 65535))
	big.Logging, big.AcceptedUDPLogsPerSec = true, 10
	cases = append(cases, struct {
		name string
		in   Inputs
	}{"big-overlapping-ranges-logging", big})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			ipt, err := Plan(tt.in, nil)
			if err != nil {
				t.Fatal(err)
			}
			rules := make([]string, len(ipt))
			for i, r := range ipt {
				rules[i] = string(r)
			}
			rs, err := PlanNFT(tt.in, nil)
			if err != nil {
				t.Fatal(err)
			}
			srcs := []netip.Addr{netip.MustParseAddr("10.255.200.1")} // not local
			dsts := []netip.Addr{netip.MustParseAddr("10.255.200.2")}
			for _, c := range tt.in.Containers {
				srcs = append(srcs, netip.MustParseAddr(c.IP))
				dsts = append(dsts, netip.MustParseAddr(c.IP))
			}
			marks := []uint32{0, 1, 2, 3, 4, 0xffff}
			var ports []int
			for _, p := range tt.in.Policies {
				ports = append(ports, p.Destination.Start-1, p.Destination.Start, p.Destination.End, p.Destination.End+1)
			}
			ports = append(ports, 8080, 9090, 1, 65535)
			slices.Sort(ports)
			ports = slices.Compact(ports)
			n := 0
			for _, src := range srcs {
				for _, dst := range dsts {
					for _, m := range marks {
						for _, proto := range []string{"tcp", "udp"} {
							for _, port := range ports {
								a := iptablesVerdict(rules, src, dst, m, proto, port)
								b := nftVerdict(rs, src, dst, m, proto, port)
								if a != b {
									t.Fatalf("%s → %s:%d/%s mark %#x: iptables %+v, nftables %+v", src, dst, port, proto, m, a, b)
								}
								n++
							}
						}
					}
				}
			}
			t.Logf("%d packets agree", n)
		})
	}
}

// TestNFTOneChangeIsOneElement: adding a policy to a cell full of them
// writes one set element, and removing it deletes that element.
func TestNFTOneChangeIsOneElement(t *testing.T) {
	ctx := context.Background()
	f := nft.NewFake()
	e := NewNFTEnforcer(f)
	in := bigInputs(40, 40)
	base, err := PlanNFT(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Enforce(ctx, base, nil); err != nil {
		t.Fatal(err)
	}
	extra := in
	extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
	changed, err := PlanNFT(extra, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []*nft.Ruleset{changed, base} {
		res, err := e.Enforce(ctx, want, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Full || res.ElementsAdded+res.ElementsDeleted != 1 || res.Rules != 0 || f.LastTransaction.NumOperations() != 1 {
			t.Errorf("change %d: %+v\n%s", i, res, f.LastTransaction)
		}
	}
	if got := f.LastTransaction.String(); got != "delete element inet netman c2c-policies { 0x00000001 . 10.255.1.3 . udp . 9999 }\n" {
		t.Errorf("last transaction: %s", got)
	}
}

func TestPlanNFTMergesRangesAndWarns(t *testing.T) {
	cs := []Container{{Handle: "h", IP: "not-an-ip", AppID: "a"}, {Handle: "g", IP: "10.255.1.9", AppID: "b"}}
	ps := []Policy{
		pol("a", "0001", "b", "0002", "icmp", 0, 0),
		pol("b", "0002", "a", "0001", "tcp", 80, 80),
		pol("c", "0003", "b", "0002", "tcp", 8000, 8080), pol("c", "0003", "b", "0002", "tcp", 8081, 8090), pol("c", "0003", "b", "0002", "tcp", 8050, 8055),
		pol("c", "0003", "b", "0002", "tcp", 90, 80),
		pol("c", "0003", "b", "0002", "tcp", 8052, 8052), pol("c", "0003", "b", "0002", "udp", 53, 53), pol("c", "0003", "b", "0002", "udp", 53, 53),
	}
	var warnings []string
	rs, err := PlanNFT(Inputs{Containers: cs, Policies: ps}, func(msg string, data map[string]any) {
		warnings = append(warnings, fmt.Sprint(msg, " ", data["reason"]))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Single ports go to the hash set (a port inside a range too, so that
	// ranges come and go without touching it), ranges to the interval set,
	// merged.
	if diff := cmp.Diff([]nft.Element{{Key: "0x00000003 . 10.255.1.9 . tcp . 8052"}, {Key: "0x00000003 . 10.255.1.9 . udp . 53"}},
		sortedElements(rs.Set(NFTPolicies))); diff != "" {
		t.Errorf("single-port policies (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]nft.Element{{Key: "0x00000003 . 10.255.1.9 . tcp . 8000-8090"}}, rs.Set(NFTPolicyRanges).Elements); diff != "" {
		t.Errorf("port ranges (-want +got):\n%s", diff)
	}
	want := []string{"skipping-source bad IP", "skipping-destination protocol has no ports", "skipping-destination bad IP", "skipping-destination bad port range"}
	if diff := cmp.Diff(want, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func sortedElements(s *nft.Set) []nft.Element {
	els := slices.Clone(s.Elements)
	slices.SortFunc(els, func(a, b nft.Element) int { return strings.Compare(a.Key, b.Key) })
	return els
}

// failingRuns is a Driver whose next fail runs return err.
type failingRuns struct {
	nft.Driver
	fail int
	err  error
}

func (d *failingRuns) Run(ctx context.Context, tx *knftables.Transaction) error {
	if d.fail > 0 {
		d.fail--
		return d.err
	}
	return d.Driver.Run(ctx, tx)
}

// c2cPart is the c2c scope of what d holds, as text.
func c2cPart(t *testing.T, d nft.Driver) string {
	t.Helper()
	st, err := d.Read(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Scoped(NFTScope).Ruleset().String()
}

// TestNFTPlannerDeltaIsTheFullPlan drives an NFTPlanner and an enforcer
// through changes of every kind, with failed plans, failed and rejected
// runs, a missed plan and drift repaired after Invalidate in between. At
// each step the planner's Ruleset must be PlanNFT's, the table must hold
// exactly it, and the enforcer must have written what a diff of the whole
// plan writes (a second enforcer given the same Rulesets without their
// Delta is the reference) — by the Delta alone where it could.
func TestNFTPlannerDeltaIsTheFullPlan(t *testing.T) {
	for _, stack := range []struct {
		name string
		ipv6 overlay6.Network
	}{{"ipv4", overlay6.Network{}}, {"dual-stack", net6}} {
		t.Run(stack.name, func(t *testing.T) { plannerDeltaIsTheFullPlan(t, stack.ipv6) })
	}
}

// plannerDeltaIsTheFullPlan is TestNFTPlannerDeltaIsTheFullPlan on the
// IPv6 overlay ipv6 (the zero Network: IPv4 only).
func plannerDeltaIsTheFullPlan(t *testing.T, ipv6 overlay6.Network) {
	ctx := context.Background()
	f := nft.NewFake()
	d := &failingRuns{Driver: f}
	e := NewNFTEnforcer(d)
	ref := nft.NewFake()
	eRef := NewNFTEnforcer(ref)
	p := NewNFTPlanner()

	in := bigInputs(8, 4)
	in.IPv6 = ipv6 // both families' sets, one Delta
	in.AcceptedUDPLogsPerSec = 100
	steps := []struct {
		name        string
		change      func(in *Inputs)
		before      func() // after planning, before enforcing
		incremental bool
		planErr     bool
		enforceErr  bool
		skip        bool // plan, but do not enforce
	}{
		{name: "first sync", change: func(*Inputs) {}},
		{name: "nothing changed", change: func(*Inputs) {}, incremental: true},
		{name: "policy added", change: func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
		}, incremental: true},
		{name: "port ranges added", change: func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0002", "0003", "app-0001", "0002", "tcp", 7000, 7100),
				pol("app-0002", "0003", "app-0001", "0002", "tcp", 7050, 7200), pol("app-0003", "0004", "app-0001", "0002", "udp", 1, 65535))
		}, incremental: true},
		{name: "a range removed, the merged range shrinks", change: func(in *Inputs) {
			in.Policies = slices.DeleteFunc(in.Policies, func(p Policy) bool { return p.Destination.End == 7200 })
		}, incremental: true},
		{name: "policy removed", change: func(in *Inputs) { in.Policies = in.Policies[1:] }, incremental: true},
		{name: "container removed", change: func(in *Inputs) { in.Containers = in.Containers[1:] }, incremental: true},
		{name: "logging on", change: func(in *Inputs) { in.Logging = true }, incremental: true},
		{name: "UDP log rate changed", change: func(in *Inputs) { in.AcceptedUDPLogsPerSec = 7 }, incremental: true},
		{name: "a (tag, destination) added while logging", change: func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0002", "0003", "app-0003", "0004", "tcp", 1234, 1234))
		}, incremental: true},
		{name: "a lesser log prefix", change: func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0002", "00003", "app-0003", "0004", "tcp", 1235, 1235))
		}, incremental: true},
		{name: "the least log prefix gone", change: func(in *Inputs) {
			in.Policies = slices.DeleteFunc(in.Policies, func(p Policy) bool { return p.Source.Tag == "00003" })
		}, incremental: true},
		{name: "a (tag, destination) gone while logging", change: func(in *Inputs) {
			in.Policies = slices.DeleteFunc(in.Policies, func(p Policy) bool { return p.Source.ID == "app-0003" })
		}, incremental: true},
		{name: "logging off", change: func(in *Inputs) { in.Logging = false }, incremental: true},
		{name: "ingress tag", change: func(in *Inputs) {
			in.IngressTag = "FFFF"
			in.Containers[0].Ports = "8080, 9090"
		}, incremental: true},
		{name: "ingress tag changed", change: func(in *Inputs) { in.IngressTag = "FFFE" }, incremental: true},
		{name: "an app's tag changed", change: func(in *Inputs) {
			for i := range in.Policies {
				if in.Policies[i].Source.ID == "app-0004" {
					in.Policies[i].Source.Tag = "0FFF"
				}
			}
		}, incremental: true},
		{name: "bad ports metadata fails the plan", change: func(in *Inputs) { in.Containers[1].Ports = "eighty" }, planErr: true},
		{name: "after a failed plan", change: func(in *Inputs) { in.Containers[1].Ports = "80" }},
		{name: "enforce fails", change: func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0005", "0006", "app-0006", "0007", "tcp", 4444, 4444))
		},
			before: func() { d.fail, d.err = 1, context.Canceled }, enforceErr: true},
		{name: "after a failed enforce", change: func(*Inputs) {}},
		{name: "delta rejected, resynced", change: func(in *Inputs) { in.Policies = in.Policies[:len(in.Policies)-1] },
			before: func() { d.fail, d.err = 1, &nft.RunError{Err: fmt.Errorf("rejected")} }},
		{name: "back to deltas", change: func(in *Inputs) { in.Policies = in.Policies[:len(in.Policies)-1] }, incremental: true},
		{name: "a plan not enforced", change: func(in *Inputs) { in.Policies = in.Policies[:len(in.Policies)-1] }, skip: true},
		{name: "after a missed plan", change: func(in *Inputs) { in.Policies = in.Policies[:len(in.Policies)-1] }},
		{name: "drift repaired after Invalidate", change: func(*Inputs) {}, before: func() {
			tx := f.NewTransaction()
			tx.Flush(&knftables.Set{Name: NFTPolicies})
			if err := f.Run(ctx, tx); err != nil {
				t.Fatal(err)
			}
			e.Invalidate()
		}},
		{name: "deltas after the repair", change: func(in *Inputs) { in.Containers = in.Containers[1:] }, incremental: true},
	}
	for _, step := range steps {
		step.change(&in)
		rs, err := p.Plan(in, nil)
		if step.planErr {
			if err == nil {
				t.Fatalf("%s: no error", step.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		full, err := PlanNFT(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(full.String(), rs.String()); diff != "" {
			t.Fatalf("%s: planner's Ruleset is not PlanNFT's (-PlanNFT +planner):\n%s", step.name, diff)
		}
		if step.skip {
			continue
		}
		if step.before != nil {
			step.before()
		}
		res, err := e.Enforce(ctx, rs, nil)
		if step.enforceErr {
			if err == nil {
				t.Fatalf("%s: no error", step.name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		t.Logf("%s: %+v", step.name, res)
		if res.Incremental != step.incremental {
			t.Errorf("%s: incremental %t, want %t (%+v)", step.name, res.Incremental, step.incremental, res)
		}
		refRes, err := eRef.Enforce(ctx, &nft.Ruleset{Chains: full.Chains, Sets: full.Sets}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Full && (res.Stats.ElementsAdded != refRes.ElementsAdded || res.ElementsDeleted != refRes.ElementsDeleted ||
			res.Rules != refRes.Rules || res.ChainsAdded != refRes.ChainsAdded || res.ChainsDeleted != refRes.ChainsDeleted) {
			t.Errorf("%s: wrote %+v, a diff of the whole plan %+v", step.name, res.Stats, refRes.Stats)
		}
		if diff := cmp.Diff(nft.StateOf(full).Ruleset().String(), c2cPart(t, f)); diff != "" {
			t.Fatalf("%s: table (-plan +table):\n%s", step.name, diff)
		}
	}
}

// BenchmarkNFTPlanner50k is the plan half of NFTEnforce50k/one-policy
// without a kernel: the NFTPlanner at 50,000 policies, one policy added
// or removed each op.
func BenchmarkNFTPlanner50k(b *testing.B) {
	in := bigInputs(1220, 41)
	extra := in
	extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
	p := NewNFTPlanner()
	if _, err := p.Plan(in, nil); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := extra
		if i%2 == 1 {
			want = in
		}
		if _, err := p.Plan(want, nil); err != nil {
			b.Fatal(err)
		}
	}
}
