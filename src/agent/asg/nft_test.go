package asg

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// nftConfigs are TestPlanGolden's configurations.
func nftConfigs(t *testing.T) []struct {
	name string
	cfg  Config
} {
	deny, err := rules.ParseDenyNetworks([]string{"169.254.0.0/16"}, []string{"10.10.0.0/16"}, []string{"10.20.0.1/16"})
	if err != nil {
		t.Fatal(err)
	}
	return []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{DeniedLogsPerSec: 1}},
		{"asg-logging", Config{ASGLogging: true, DeniedLogsPerSec: 3}},
		{"deny-networks-conn-limit", Config{Deny: deny, DeniedLogsPerSec: 1,
			Conn: rules.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}}},
		{"conn-limit-no-logging", Config{Conn: rules.OutConn{Limit: true, Burst: 7, RatePerSec: 3}}},
		{"disable-container-network-policy", Config{DisableContainerNetworkPolicy: true, OverlayNetwork: "10.255.0.0/16"}},
	}
}

// renderNFTPlans prints the plans as the table they make (with the parent
// chains the asg sync writes), preceded by what was skipped or dropped.
func renderNFTPlans(plans []NFTChainPlan) string {
	var b strings.Builder
	rs := &nft.Ruleset{}
	for _, p := range plans {
		c := p.Container
		fmt.Fprintf(&b, "# %s space=%s workload=%q chain=%s\n", c.Handle, c.SpaceID, c.Workload, p.Chain)
		if p.Err != nil {
			fmt.Fprintf(&b, "# skipped: %v\n", p.Err)
			continue
		}
		for _, w := range p.Warnings {
			fmt.Fprintf(&b, "# dropped: %s\n", w)
		}
		rs.Chains = append(rs.Chains, &nft.Chain{Name: p.Parent, Rules: []string{"jump " + p.Chain, nft.Reject}})
		rs.Merge(p.Ruleset)
	}
	return b.String() + rs.String()
}

func TestPlanNFTGolden(t *testing.T) {
	for _, tc := range nftConfigs(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlanner(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "nft-"+tc.name+".golden"), []byte(renderNFTPlans(p.PlanNFT(goldenContainers, allGroups, 100))))
		})
	}
}

// packet is a new connection's first packet leaving a container.
type packet struct {
	src, dst netip.Addr
	proto    string // tcp, udp, icmp, gre
	port     int    // tcp and udp
	icmpType int
	icmpCode int
}

// egressOutcome is what an egress chain does with it.
type egressOutcome struct {
	verdict   string // accept, reject
	logged    bool   // an OK_ line (accepted through the log chain)
	deniedLog bool   // a DENY_ line
}

var (
	iptRange = regexp.MustCompile(`-m iprange --dst-range (\S+)-(\S+)`)
	iptProto = regexp.MustCompile(`^-p (\w+) `)
	iptPort  = regexp.MustCompile(`--dport (\d+)(?::(\d+))?`)
	iptICMP  = regexp.MustCompile(`--icmp-type (any|(\d+)/(\d+))`)
)

// iptablesOutcome interprets an asg chain's iptables rules (the shapes the
// planner writes) for a new connection under the rate limit. It also
// reports whether some logged rule would accept the packet.
func iptablesOutcome(chain []string, p packet) (out egressOutcome, loggedMatch bool) {
	decided := false
	for _, r := range chain {
		switch {
		case strings.Contains(r, "--state") || strings.Contains(r, "hashlimit"):
			continue
		case strings.HasPrefix(r, "-s "):
			f := strings.Fields(r)
			pfx := netip.MustParsePrefix(f[1])
			if !decided && pfx.Contains(p.src) && pfx.Contains(p.dst) {
				out, decided = egressOutcome{verdict: "accept"}, true
			}
		case strings.HasPrefix(r, "-d "):
			if !decided && netip.MustParsePrefix(strings.Fields(r)[1]).Contains(p.dst) {
				out, decided = egressOutcome{verdict: "reject"}, true
			}
		case strings.Contains(r, "-j LOG"):
			if !decided {
				out.deniedLog = true
			}
		case strings.HasPrefix(r, "-j REJECT"):
			if !decided {
				out.verdict, decided = "reject", true
			}
		default:
			if !iptMatches(r, p) {
				continue
			}
			logged := strings.Contains(r, " -g ")
			loggedMatch = loggedMatch || logged
			if !decided {
				out, decided = egressOutcome{verdict: "accept", logged: logged}, true
			}
		}
	}
	return out, loggedMatch
}

func iptMatches(r string, p packet) bool {
	m := iptRange.FindStringSubmatch(r)
	lo, hi := netip.MustParseAddr(m[1]), netip.MustParseAddr(m[2])
	if p.dst.Less(lo) || hi.Less(p.dst) {
		return false
	}
	if pm := iptProto.FindStringSubmatch(r); pm != nil && pm[1] != p.proto {
		return false
	}
	if pm := iptPort.FindStringSubmatch(r); pm != nil {
		a, _ := strconv.Atoi(pm[1])
		b := a
		if pm[2] != "" {
			b, _ = strconv.Atoi(pm[2])
		}
		return p.port >= a && p.port <= b
	}
	if im := iptICMP.FindStringSubmatch(r); im != nil && im[1] != "any" {
		t, _ := strconv.Atoi(im[2])
		c, _ := strconv.Atoi(im[3])
		return p.icmpType == t && p.icmpCode == c
	}
	return true
}

// nftOutcome evaluates an egress chain of the nft ruleset for the packet.
func nftOutcome(rs *nft.Ruleset, chain string, p packet) egressOutcome {
	var out egressOutcome
	for _, r := range rs.Chain(chain).Rules {
		f := strings.Fields(r)
		switch {
		case strings.HasPrefix(r, "ct state") || strings.HasPrefix(r, "meta l4proto tcp ct state"):
		case strings.HasPrefix(r, "ip saddr "):
			pfx := netip.MustParsePrefix(f[2])
			if pfx.Contains(p.src) && pfx.Contains(p.dst) {
				return egressOutcome{verdict: "accept"}
			}
		case strings.HasPrefix(r, "limit rate"):
			out.deniedLog = true
		case r == nft.Reject:
			out.verdict = "reject"
			return out
		case strings.HasSuffix(r, nft.RejectIPv4): // deny networks
			for _, a := range strings.Split(strings.Trim(strings.TrimSuffix(strings.TrimPrefix(r, "ip daddr "), " "+nft.RejectIPv4), "{ }"), ", ") {
				if inAddr(a, p.dst) {
					return egressOutcome{verdict: "reject"}
				}
			}
		default:
			set := strings.TrimPrefix(f[len(f)-2], "@")
			if f[len(f)-2] == "goto" {
				set = strings.TrimPrefix(f[len(f)-3], "@")
			}
			if nftSetMatches(rs.Set(set), p) {
				return egressOutcome{verdict: "accept", logged: strings.Contains(r, " goto ")}
			}
		}
	}
	return out
}

func nftSetMatches(s *nft.Set, p packet) bool {
	for _, e := range s.Elements {
		f := strings.Split(e.Key, " . ")
		if !inAddr(f[0], p.dst) {
			continue
		}
		switch s.Type {
		case "ipv4_addr . inet_proto": // all protocols: 0-255
			if inRange(f[1], protoNumber(p.proto)) {
				return true
			}
		case "ipv4_addr . inet_proto . inet_service":
			if f[1] == p.proto && inRange(f[2], p.port) {
				return true
			}
		case "ipv4_addr . icmp_type . icmp_code":
			if p.proto == "icmp" && inRange(f[1], p.icmpType) && inRange(f[2], p.icmpCode) {
				return true
			}
		}
	}
	return false
}

func protoNumber(name string) int {
	if n, ok := nft.ProtoNumber(name); ok {
		return int(n)
	}
	return map[string]int{"gre": 47}[name]
}

func inAddr(s string, a netip.Addr) bool {
	if lo, hi, ok := strings.Cut(s, "-"); ok {
		return !a.Less(netip.MustParseAddr(lo)) && !netip.MustParseAddr(hi).Less(a)
	}
	if strings.Contains(s, "/") {
		return netip.MustParsePrefix(s).Contains(a)
	}
	return netip.MustParseAddr(s) == a
}

func inRange(s string, v int) bool {
	lo, hi, ok := strings.Cut(s, "-")
	a, _ := strconv.Atoi(lo)
	b := a
	if ok {
		b, _ = strconv.Atoi(hi)
	}
	return v >= a && v <= b
}

// TestPlanNFTVerdictsMatchIPTables probes every container's iptables and
// nftables egress chains with new connections at, inside and around every
// destination, port and ICMP type the groups name, plus the deny networks:
// the verdicts and the DENY_ logs must be the same, and the OK_ log too,
// except that nftables logs a connection an unlogged rule accepts first
// when a logged rule also accepts it (nft.Egress: logged wins).
func TestPlanNFTVerdictsMatchIPTables(t *testing.T) {
	var addrs []netip.Addr
	for _, s := range []string{"0.0.0.1", "8.8.8.8", "8.8.8.9", "1.1.1.1", "10.0.0.0", "10.1.0.0", "10.2.0.1", "10.2.0.2", "10.2.0.3",
		"10.9.0.6", "10.10.1.1", "10.20.0.1", "10.255.0.9", "169.254.1.1", "172.16.0.1", "172.16.0.2", "172.17.255.255",
		"192.168.0.1", "192.168.1.9", "192.168.1.10", "192.168.1.20", "192.168.1.21", "9.255.255.255", "11.0.0.0"} {
		addrs = append(addrs, netip.MustParseAddr(s))
	}
	var probes []packet
	for _, a := range addrs {
		for _, port := range []int{22, 53, 79, 80, 81, 443, 999, 1000, 1500, 2000, 2001, 2999, 3000, 3100, 3101, 8080} {
			probes = append(probes, packet{dst: a, proto: "tcp", port: port}, packet{dst: a, proto: "udp", port: port})
		}
		for _, tc := range [][2]int{{0, 0}, {3, 0}, {3, 1}, {3, 255}, {8, 0}, {8, 1}, {11, 0}} {
			probes = append(probes, packet{dst: a, proto: "icmp", icmpType: tc[0], icmpCode: tc[1]})
		}
		probes = append(probes, packet{dst: a, proto: "gre"})
	}
	for _, tc := range nftConfigs(t) {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewPlanner(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			ipt := p.Plan(goldenContainers, allGroups)
			nplans := p.PlanNFT(goldenContainers, allGroups, 100)
			n := 0
			for i, ip := range ipt {
				np := nplans[i]
				if ip.Err != nil && np.Err == nil && strings.Contains(ip.Err.Error(), "is already the chain of") {
					continue // names are not cut to 28 characters in nft: no collision
				}
				if (ip.Err == nil) != (np.Err == nil) {
					t.Fatalf("%s: iptables error %v, nftables error %v", ip.Container.Handle, ip.Err, np.Err)
				}
				if ip.Err != nil {
					continue
				}
				chain := make([]string, len(ip.Rules))
				for j, r := range ip.Rules {
					chain[j] = string(r)
				}
				for _, pk := range probes {
					pk.src = netip.MustParseAddr(ip.Container.IP)
					a, loggedMatch := iptablesOutcome(chain, pk)
					b := nftOutcome(np.Ruleset, np.Chain, pk)
					if a.verdict != b.verdict || a.deniedLog != b.deniedLog || (a.logged != b.logged && !(b.logged && loggedMatch)) {
						t.Fatalf("%s: %+v: iptables %+v, nftables %+v", ip.Container.Handle, pk, a, b)
					}
					n++
				}
			}
			t.Logf("%d connections agree", n)
		})
	}
}

// nftCell is a fake table holding the wrapper's netout chains of handles.
func nftCell(t *testing.T, handles ...string) *nft.Fake {
	t.Helper()
	f := nft.NewFake()
	tx := f.NewTransaction()
	nft.AddSkeleton(tx)
	for _, h := range handles {
		nft.Put(tx, &nft.Ruleset{Chains: []*nft.Chain{{Name: nft.NetOutChain(h), Rules: []string{nft.Reject}}}})
	}
	if err := f.Run(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestNFTEnforcerLifecycle(t *testing.T) {
	ctx := context.Background()
	group := func(rules string) policy.SecurityGroup {
		return policy.SecurityGroup{GUID: "g", RunningSpaceGUIDs: []string{"s"}, Rules: rules}
	}
	cs := []Container{{Handle: "h1", SpaceID: "s", Workload: "app"}, {Handle: "h2", SpaceID: "s", Workload: "app"}, {Handle: "h3", SpaceID: "s", Workload: "app"}}
	f := nftCell(t, "h1", "h2") // h3's wrapper chain does not exist (yet)
	p, _ := NewPlanner(Config{})
	e := NewNFTEnforcer(f)
	g := group(`[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80"}]`)

	res, err := e.Enforce(ctx, p.PlanNFT(cs, []policy.SecurityGroup{g}, 100))
	if err != nil || !res.Full || !cmp.Equal(res.ParentAbsent, []string{"h3"}) {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	table := f.Ruleset()
	if got := table.Chain("netout--h1").Rules; !cmp.Equal(got, []string{"jump asg--h1", "reject"}) {
		t.Errorf("parent h1: %q", got)
	}
	if table.Chain("asg--h3") != nil {
		t.Error("asg chain created for a container without its netout chain")
	}

	// A security group change: elements only, one in the set both
	// containers of the space look up.
	g2 := group(`[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"80,443"}]`)
	res, err = e.Enforce(ctx, p.PlanNFT(cs, []policy.SecurityGroup{g2}, 100))
	if err != nil || res.Full || res.ElementsAdded != 1 || res.ElementsDeleted != 0 || res.Rules != 0 {
		t.Fatalf("group change: %+v, %v", res, err)
	}

	// h3's wrapper chain appears (its CNI ADD, after the enforcer last
	// read the table): the next sync, a delta, points it at h3's chain.
	tx := f.NewTransaction()
	nft.Put(tx, &nft.Ruleset{Chains: []*nft.Chain{{Name: nft.NetOutChain("h3"), Rules: []string{nft.Reject}}}})
	if err := f.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	res, err = e.Enforce(ctx, p.PlanNFT(cs, []policy.SecurityGroup{g2}, 100))
	if err != nil || res.Full || len(res.ParentAbsent) != 0 {
		t.Fatalf("new container: %+v, %v", res, err)
	}
	table = f.Ruleset()
	if got := table.Chain("netout--h3").Rules; !cmp.Equal(got, []string{"jump asg--h3", "reject"}) {
		t.Errorf("parent h3, made after the enforcer's last read: %q", got)
	}
	if table.Chain("asg--h3") == nil {
		t.Error("no asg chain for h3")
	}

	// h1 is gone from the agent's list (its chain stays in the wrapper's
	// table until DEL): its asg objects go, its parent rejects again.
	res, err = e.Enforce(ctx, p.PlanNFT(cs[1:], []policy.SecurityGroup{g2}, 100))
	if err != nil || res.ChainsDeleted != 2 {
		t.Fatalf("container gone: %+v, %v", res, err)
	}
	table = f.Ruleset()
	if got := table.Chain("netout--h1").Rules; !cmp.Equal(got, []string{"reject"}) {
		t.Errorf("parent h1 after cleanup: %q", got)
	}
	for _, s := range table.Sets {
		if strings.HasPrefix(s.Name, "asg--h1") {
			t.Errorf("set %s left behind", s.Name)
		}
	}

	// A plan that fails (bad group) leaves the container's objects as
	// they are.
	before := f.Ruleset().String()
	bad := group(`[{"protocol":"tcp","destination":"nope","ports":"80"}]`)
	res, err = e.Enforce(ctx, p.PlanNFT(cs[1:], []policy.SecurityGroup{bad}, 100))
	if err != nil || res.Changed() {
		t.Fatalf("failed plan: %+v, %v", res, err)
	}
	if diff := cmp.Diff(before, f.Ruleset().String()); diff != "" {
		t.Errorf("failed plan changed the table:\n%s", diff)
	}

	// A restarted agent adopts everything without writing.
	last := f.LastTransaction
	res, err = NewNFTEnforcer(f).Enforce(ctx, p.PlanNFT(cs[1:], []policy.SecurityGroup{g2}, 100))
	if err != nil || !res.Full || res.Changed() || f.LastTransaction != last {
		t.Fatalf("restart: %+v, %v", res, err)
	}
}
