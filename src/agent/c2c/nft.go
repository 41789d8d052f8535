package c2c

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// The c2c part of netman's nftables table (enforcement_backend: nftables).
// The agent owns the c2c chain (jumped first from the forward base chain)
// and every chain and set named c2c-*.
const (
	// NFTTags maps a local source container's IP to its app's tag.
	NFTTags = "c2c-tags"
	// NFTPolicies holds every allowed (tag, destination IP, protocol,
	// port) of a single-port policy (upstream's default) as a plain hash
	// set, and NFTPolicyRanges every real port range as a concatenated
	// interval set. A new connection costs at most two lookups whatever the
	// number of policies. The split keeps changes cheap: the kernel commits
	// an element of a hash set in constant time, while a concatenated
	// interval set (pipapo) rebuilds its lookup tables from all its
	// elements on every commit (17 ms at 50,000 elements).
	NFTPolicies     = "c2c-policies"
	NFTPolicyRanges = "c2c-policy-ranges"
	// NFTLogged is the chain accepted packets go through when
	// iptables_c2c_logging is on; NFTLog maps (tag, destination IP) to the
	// small chain logging them with upstream's OK_ prefix.
	NFTLogged = "c2c-logged"
	NFTLog    = "c2c-log"
	// nftLogChainPrefix starts those per-destination log chains:
	// c2c-log--<tag>--<destination IP>.
	nftLogChainPrefix = "c2c-log--"

	// The IPv6 twins on a dual-stack cell (Inputs.IPv6): the same
	// elements for each container's IPv6 address. NFTLog6 maps (tag,
	// IPv6 destination) to the same log chain as the container's IPv4
	// address, so one log chain (and one UDP limit) covers a (source app,
	// destination container) in both families.
	NFTTags6         = "c2c-tags6"
	NFTPolicies6     = "c2c-policies6"
	NFTPolicyRanges6 = "c2c-policy-ranges6"
	NFTLog6          = "c2c-log6"
)

// NFTScope is everything the c2c sync owns in netman's table.
var NFTScope = nft.PrefixScope([]string{nft.ChainC2C}, "c2c-")

// NewNFTEnforcer returns the enforcer of the c2c part of the table. The
// agent's c2c cycle calls PlanNFT and then Enforce(ctx, plan, nil).
func NewNFTEnforcer(d nft.Driver) *nft.Enforcer { return nft.NewEnforcer(d, NFTScope) }

// PlanNFT is Plan for the nftables backend: the same inputs, the same
// verdicts, with sets instead of one rule per container and policy.
//
//   - Every packet forwarded from a local container that is the source of
//     a policy gets its app's tag as mark (map c2c-tags), as upstream's
//     MARK rules do: toward the VTEP the mark travels in the VXLAN GBP
//     header, toward a local destination the policy lookup reads it.
//   - A packet whose (mark, destination IP, protocol, port) is in
//     c2c-policies, or else in c2c-policy-ranges, is accepted. c2c-policies
//     holds every single-port policy for each local destination container,
//     and the router's ingress tag for each container port when overlay
//     ingress is on (upstream's AllowIngress rules); c2c-policy-ranges
//     holds the policies whose range spans more than one port, ranges of
//     one (tag, destination, protocol) merged since interval elements must
//     not overlap. A single port inside a range stays in both sets, so that
//     adding or removing a range never rewrites single-port elements.
//   - With logging, an accepted packet first goes through the log chain of
//     its (tag, destination): the OK_<tag>_<app> prefix of upstream's LOG
//     rules, new TCP connections logged, UDP at most AcceptedUDPLogsPerSec
//     a second. iptables limits each policy rule on its own; here one limit
//     covers all the policies of a (source app, destination container).
//   - With network policy disabled, overlay-to-overlay traffic is accepted
//     first.
//   - On a dual-stack cell (in.IPv6 enabled) every element above has its
//     IPv6 twin, keyed by the container's IPv6 address, in c2c-tags6,
//     c2c-policies6, c2c-policy-ranges6 and c2c-log6, looked up by ip6
//     rules beside the ip ones (and the IPv6 overlay accepted when network
//     policy is disabled). An IPv4-only plan is exactly what it was
//     before dual stack.
//
// Errors and warnings are Plan's: bad ports metadata fails the plan;
// unusable entries (a bad IP or tag, a protocol without ports, a port
// range nft cannot hold) are dropped and reported through warn.
//
// PlanNFT starts from nothing; the agent's cycle uses an NFTPlanner, which
// makes the same Ruleset from its previous one.
func PlanNFT(in Inputs, warn Warn) (*nft.Ruleset, error) {
	return NewNFTPlanner().Plan(in, warn)
}

// NFTPlanner is PlanNFT for a cycle that runs again and again: it keeps
// the elements of its previous plan, keyed by compact structs, renders
// only the elements that are new, and hands the enforcer the difference
// (Ruleset.Delta), so that a policy change costs the walk over the inputs
// (one map lookup per policy and destination container) and the change,
// not the formatting and comparing of every element. Its Rulesets are
// complete: an enforcer that cannot use the Delta (after a failure, a
// drift check, or a plan it missed) diffs them whole. Not safe for
// concurrent use.
type NFTPlanner struct {
	gen      uint64 // the Gen of the last plan; 0 before the first or after a failed one
	tags     tracked[uint32, uint32]
	singles  tracked[nftSingleKey, struct{}]
	ranges   tracked[nftRangeKey, struct{}]
	logs     tracked[nftLogKey, struct{}]
	logChain map[nftLogKey]*nftLogChain
	// The IPv6 twins (dual stack): keyed like the IPv4 sets by the
	// container's IPv4 address, rendered with its IPv6 address in net6.
	net6     overlay6.Network
	tags6    tracked[uint32, uint32]
	singles6 tracked[nftSingleKey, struct{}]
	ranges6  tracked[nftRangeKey, struct{}]
	logs6    tracked[nftLogKey, struct{}]
	// logOrder is the log chains sorted by name, kept while the set of
	// log chains and their rules do not change.
	logOrder []*nft.Chain
}

// NewNFTPlanner returns a planner with no previous plan.
func NewNFTPlanner() *NFTPlanner {
	p := &NFTPlanner{}
	p.reset()
	return p
}

func (p *NFTPlanner) reset() {
	p.gen = 0
	p.tags = newTracked(func(ip, mark uint32) nft.Element {
		return nft.Element{Key: nft.Addr(a4(ip)), Value: nft.Mark(mark)}
	})
	p.singles = newTracked(func(k nftSingleKey, _ struct{}) nft.Element {
		port := uint32(k[1] & 0xffff)
		return nft.Element{Key: nft.Key(nft.Mark(uint32(k[0]>>32)), nft.Addr(a4(uint32(k[0]))), nft.Proto(uint8(k[1]>>16)), nft.Range(port, port))}
	})
	p.ranges = newTracked(func(k nftRangeKey, _ struct{}) nft.Element {
		return nft.Element{Key: nft.Key(nft.Mark(k.mark), nft.Addr(a4(k.ip)), nft.Proto(k.proto), nft.Range(k.lo, k.hi))}
	})
	p.logs = newTracked(func(k nftLogKey, _ struct{}) nft.Element {
		return nft.Element{Key: nft.Key(nft.Mark(k.mark), nft.Addr(a4(k.ip))), Value: nft.Jump(k.chain())}
	})
	p.logChain = map[nftLogKey]*nftLogChain{}
	p.logOrder = nil
	a6 := func(ip uint32) string { return nft.Addr(p.net6.Addr(a4(ip))) }
	p.tags6 = newTracked(func(ip, mark uint32) nft.Element {
		return nft.Element{Key: a6(ip), Value: nft.Mark(mark)}
	})
	p.singles6 = newTracked(func(k nftSingleKey, _ struct{}) nft.Element {
		port := uint32(k[1] & 0xffff)
		return nft.Element{Key: nft.Key(nft.Mark(uint32(k[0]>>32)), a6(uint32(k[0])), nft.Proto(uint8(k[1]>>16)), nft.Range(port, port))}
	})
	p.ranges6 = newTracked(func(k nftRangeKey, _ struct{}) nft.Element {
		return nft.Element{Key: nft.Key(nft.Mark(k.mark), a6(k.ip), nft.Proto(k.proto), nft.Range(k.lo, k.hi))}
	})
	p.logs6 = newTracked(func(k nftLogKey, _ struct{}) nft.Element {
		return nft.Element{Key: nft.Key(nft.Mark(k.mark), a6(k.ip)), Value: nft.Jump(k.chain())}
	})
}

type nftPolicyKey struct {
	mark  uint32
	ip    uint32
	proto uint8
}

// nftSingleKey is a single-port policy element: mark<<32|destination IP
// and protocol<<16|port, packed in 16 bytes without padding, which Go's
// maps hash fastest after the integer and string keys.
type nftSingleKey [2]uint64

func singleKey(k nftPolicyKey, port uint16) nftSingleKey {
	return nftSingleKey{uint64(k.mark)<<32 | uint64(k.ip), uint64(k.proto)<<16 | uint64(port)}
}

type nftRangeKey struct {
	nftPolicyKey
	lo, hi uint32
}

type nftLogKey struct {
	mark uint32
	ip   uint32
}

func (k nftLogKey) chain() string {
	return fmt.Sprintf("%s%x--%s", nftLogChainPrefix, k.mark, a4(k.ip))
}

// nftLogChain is a (tag, destination)'s log chain: the least prefix of
// its policies and the chain rendered with it.
type nftLogChain struct {
	tag, app string // the prefix is OK_<tag>_<app>
	udp      int    // AcceptedUDPLogsPerSec it was rendered with
	stamp    uint64 // the plan that last saw it
	chain    *nft.Chain
}

// Plan makes the Ruleset of in, with Gen set and, after a successful
// plan, Delta from that plan's Ruleset. The Ruleset's element slices are
// the planner's: they stay valid through the next Plan and may be reused
// by the one after it (the agent's cycle enforces a plan before making the
// next, and the enforcer keeps no element slice).
func (p *NFTPlanner) Plan(in Inputs, warn Warn) (*nft.Ruleset, error) {
	rs, err := p.plan(in, warn)
	if err != nil {
		p.reset() // its tracked sets are part-way through this plan
	}
	return rs, err
}

func (p *NFTPlanner) plan(in Inputs, warn Warn) (*nft.Ruleset, error) {
	if warn == nil {
		warn = func(string, map[string]any) {}
	}
	if in.IPv6 != p.net6 { // a planner serves one network: its elements are rendered with it
		p.net6 = in.IPv6
		p.reset()
	}
	six := p.net6.Enabled()
	gen := nft.NewGeneration()
	p.tags.begin(gen)
	p.singles.begin(gen)
	p.ranges.begin(gen)
	p.logs.begin(gen)
	if six {
		p.tags6.begin(gen)
		p.singles6.begin(gen)
		p.ranges6.begin(gen)
		p.logs6.begin(gen)
	}
	ports := map[nftPolicyKey][]nft.Box{} // ranges of more than one port
	var ingressMark uint32
	if in.IngressTag != "" {
		m, err := nft.ParseTag(in.IngressTag)
		if err != nil {
			return nil, fmt.Errorf("ingress tag: %w", err)
		}
		ingressMark = m
	}
	// The cell's containers, their IPs parsed once, by app.
	type container struct {
		*Container
		ip     uint32
		ok     bool
		tagged bool // its IP has its tag in this plan
	}
	ctrs := make([]container, len(in.Containers))
	byApp := make(map[string][]int32, len(in.Containers))
	for i := range in.Containers {
		c := &in.Containers[i]
		ctrs[i].Container = c
		if ip, err := netip.ParseAddr(c.IP); err == nil && ip.Is4() {
			ctrs[i].ip, ctrs[i].ok = u32(ip), true
		}
		byApp[c.AppID] = append(byApp[c.AppID], int32(i))
	}
	badIP := map[string]bool{}
	warnIP := func(kind string, c container, data map[string]any) {
		if !badIP[kind+c.IP] {
			badIP[kind+c.IP] = true
			warn(kind, withReason(data, "bad IP"))
		}
	}
	// Each policy visits the containers of its source app (their tag) and
	// of its destination app (its elements), not every container.
	// Consecutive policies often share their destination.
	var lastDst string
	var dsts []int32
	for i := range in.Policies {
		pol := &in.Policies[i]
		for _, ci := range byApp[pol.Source.ID] {
			c := &ctrs[ci]
			switch {
			case c.tagged:
			case !c.ok:
				warnIP("skipping-source", *c, map[string]any{"ip": c.IP, "app": pol.Source.ID})
			case p.tags.has(c.ip): // another container with its IP
				c.tagged = true
			default:
				if m, err := nft.ParseTag(pol.Source.Tag); err != nil {
					warn("skipping-source", map[string]any{"ip": c.IP, "app": pol.Source.ID, "reason": "bad tag"})
				} else {
					p.tags.put(c.ip, m)
					if six {
						p.tags6.put(c.ip, m)
					}
					c.tagged = true
				}
			}
		}
		if i == 0 || pol.Destination.ID != lastDst {
			lastDst, dsts = pol.Destination.ID, byApp[pol.Destination.ID]
		}
		if len(dsts) == 0 {
			continue
		}
		d := &pol.Destination
		proto, protoOK := nft.ProtoNumber(d.Protocol)
		protoOK = protoOK && proto != 1
		portsOK := d.Start >= 0 && d.End <= 65535 && d.Start <= d.End
		mark, markErr := nft.ParseTag(pol.Source.Tag)
		for _, ci := range dsts {
			c := ctrs[ci]
			switch {
			case !c.ok:
				warnIP("skipping-destination", c, map[string]any{"ip": c.IP, "app": d.ID})
				continue
			case !protoOK:
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "protocol": d.Protocol, "reason": "protocol has no ports"})
				continue
			case !portsOK:
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "ports": fmt.Sprintf("%d-%d", d.Start, d.End), "reason": "bad port range"})
				continue
			case markErr != nil:
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "reason": "bad source tag"})
				continue
			}
			k := nftPolicyKey{mark, c.ip, proto}
			if d.Start == d.End {
				p.singles.put(singleKey(k, uint16(d.Start)), struct{}{})
				if six {
					p.singles6.put(singleKey(k, uint16(d.Start)), struct{}{})
				}
			} else {
				ports[k] = append(ports[k], nft.Box{{Lo: uint32(d.Start), Hi: uint32(d.End)}})
			}
			if in.Logging {
				p.logPrefix(nftLogKey{mark, c.ip}, pol.Source.Tag, d.ID, gen)
			}
		}
	}
	if in.IngressTag != "" {
		for _, c := range ctrs {
			if c.Ports == "" {
				continue
			}
			for _, s := range strings.Split(c.Ports, ",") {
				port, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return nil, fmt.Errorf("converting container metadata port to int: %w", err)
				}
				if !c.ok {
					warnIP("skipping-ingress", c, map[string]any{"ip": c.IP})
					continue
				}
				if port < 0 || port > 65535 {
					continue
				}
				p.singles.put(singleKey(nftPolicyKey{ingressMark, c.ip, 6}, uint16(port)), struct{}{})
				if six {
					p.singles6.put(singleKey(nftPolicyKey{ingressMark, c.ip, 6}, uint16(port)), struct{}{})
				}
			}
		}
	}
	for k, boxes := range ports {
		for _, b := range nft.Disjoint(boxes) {
			p.ranges.put(nftRangeKey{k, b[0].Lo, b[0].Hi}, struct{}{})
			if six {
				p.ranges6.put(nftRangeKey{k, b[0].Lo, b[0].Hi}, struct{}{})
			}
		}
	}

	rs := &nft.Ruleset{Gen: gen}
	delta := &nft.Delta{From: p.gen, Sets: map[string]*nft.SetDelta{}}
	rs.Sets = append(rs.Sets,
		p.tags.end(&nft.Set{Name: NFTTags, Type: "ipv4_addr", Value: "mark"}, delta),
		p.singles.end(&nft.Set{Name: NFTPolicies, Type: "mark . ipv4_addr . inet_proto . inet_service"}, delta),
		p.ranges.end(&nft.Set{Name: NFTPolicyRanges, Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true}, delta))
	logMap := p.logs.end(&nft.Set{Name: NFTLog, Type: "mark . ipv4_addr", Value: "verdict"}, delta)
	var logMap6 *nft.Set
	if six {
		rs.Sets = append(rs.Sets,
			p.tags6.end(&nft.Set{Name: NFTTags6, Type: "ipv6_addr", Value: "mark"}, delta),
			p.singles6.end(&nft.Set{Name: NFTPolicies6, Type: "mark . ipv6_addr . inet_proto . inet_service"}, delta),
			p.ranges6.end(&nft.Set{Name: NFTPolicyRanges6, Type: "mark . ipv6_addr . inet_proto . inet_service", Interval: true}, delta))
		logMap6 = p.logs6.end(&nft.Set{Name: NFTLog6, Type: "mark . ipv6_addr", Value: "verdict"}, delta)
	}

	var chain []string
	if in.DisableNetworkPolicy {
		pfx, err := netip.ParsePrefix(in.OverlayNetwork)
		if err != nil || !pfx.Addr().Is4() {
			return nil, fmt.Errorf("overlay network %q: not an IPv4 CIDR", in.OverlayNetwork)
		}
		o := nft.Prefix(pfx)
		chain = append(chain, "ip saddr "+o+" ip daddr "+o+" accept")
		if six {
			o6 := nft.Prefix(p.net6.Prefix())
			chain = append(chain, "ip6 saddr "+o6+" ip6 daddr "+o6+" accept")
		}
	}
	chain = append(chain, "meta mark set ip saddr map @"+NFTTags)
	if six {
		chain = append(chain, "meta mark set ip6 saddr map @"+NFTTags6)
	}
	// The hash set first: most policies are single-port.
	lookups := []string{
		"meta mark . ip daddr . meta l4proto . th dport @" + NFTPolicies,
		"meta mark . ip daddr . meta l4proto . th dport @" + NFTPolicyRanges,
	}
	if six {
		lookups = append(lookups,
			"meta mark . ip6 daddr . meta l4proto . th dport @"+NFTPolicies6,
			"meta mark . ip6 daddr . meta l4proto . th dport @"+NFTPolicyRanges6)
	}
	verdict := " accept"
	if in.Logging {
		verdict = " jump " + NFTLogged
	}
	for _, l := range lookups {
		chain = append(chain, l+verdict)
	}
	rs.Chains = append(rs.Chains, &nft.Chain{Name: nft.ChainC2C, Rules: chain})
	if in.Logging {
		logged := []string{"meta mark . ip daddr vmap @" + NFTLog}
		rs.Sets = append(rs.Sets, logMap)
		if six {
			logged = append(logged, "meta mark . ip6 daddr vmap @"+NFTLog6)
			rs.Sets = append(rs.Sets, logMap6)
		}
		rs.Chains = append(rs.Chains, &nft.Chain{Name: NFTLogged, Rules: append(logged, "accept")})
		rs.Chains = append(rs.Chains, p.logChains(in.AcceptedUDPLogsPerSec, gen)...)
	} else if len(p.logChain) > 0 {
		clear(p.logChain)
		p.logOrder = nil
	}
	if p.gen != 0 {
		rs.Delta = delta
	}
	p.gen = gen
	return rs, nil
}

// logPrefix records that a policy from the app tagged tag to app reaches
// (tag, destination) k. Plan orders destinations by their JSON, so the
// first prefix of a (tag, destination) wins; the least is kept.
func (p *NFTPlanner) logPrefix(k nftLogKey, tag, app string, gen uint64) {
	p.logs.put(k, struct{}{})
	if p.net6.Enabled() {
		p.logs6.put(k, struct{}{})
	}
	lc := p.logChain[k]
	switch {
	case lc == nil:
		p.logChain[k] = &nftLogChain{tag: tag, app: app, stamp: gen}
		p.logOrder = nil
	case lc.stamp != gen:
		lc.stamp = gen
		if lc.tag != tag || lc.app != app {
			lc.tag, lc.app, lc.chain = tag, app, nil
		}
	case lessPrefix(tag, app, lc.tag, lc.app):
		lc.tag, lc.app, lc.chain = tag, app, nil
	}
}

// lessPrefix reports whether OK_<tag1>_<app1> sorts before OK_<tag2>_<app2>,
// without building them.
func lessPrefix(tag1, app1, tag2, app2 string) bool {
	at := func(tag, app string, i int) int {
		switch {
		case i < len(tag):
			return int(tag[i])
		case i == len(tag):
			return '_'
		case i-len(tag)-1 < len(app):
			return int(app[i-len(tag)-1])
		}
		return -1
	}
	for i := 0; ; i++ {
		a, b := at(tag1, app1, i), at(tag2, app2, i)
		if a != b || a < 0 {
			return a < b
		}
	}
}

// logChains drops the log chains this plan did not see, renders those
// whose prefix or UDP limit changed, and returns them all sorted by name.
// A prefix that changed mid-plan (a lesser one found after the first)
// left the chain nil.
func (p *NFTPlanner) logChains(udp int, gen uint64) []*nft.Chain {
	for k, lc := range p.logChain {
		if lc.stamp != gen {
			delete(p.logChain, k)
			p.logOrder = nil
			continue
		}
		if lc.chain != nil && lc.udp == udp {
			continue
		}
		pfx := "OK_" + lc.tag + "_" + lc.app
		lc.udp = udp
		lc.chain = &nft.Chain{Name: k.chain(), Rules: []string{
			"meta l4proto tcp ct state invalid,new,untracked log prefix " + nft.LogPrefix(pfx),
			"meta l4proto udp " + nft.LimitedLog(udp, pfx),
		}}
		p.logOrder = nil
	}
	if p.logOrder == nil {
		p.logOrder = make([]*nft.Chain, 0, len(p.logChain))
		for _, lc := range p.logChain {
			p.logOrder = append(p.logOrder, lc.chain)
		}
		slices.SortFunc(p.logOrder, func(a, b *nft.Chain) int { return strings.Compare(a.Name, b.Name) })
	}
	return p.logOrder
}

// tracked is one set's elements across plans: each key with its value,
// its rendered element and the stamp of the last plan that put it, in
// slots indexed by key. A plan puts its keys between begin and end; end
// gives the set the plan's elements (the previous plan's slice when
// nothing changed) and records what changed since the previous plan.
//
// Inputs come in much the same order from one plan to the next, so put
// first checks the key the previous plan put next (seq, a sequential
// read) and only looks the map up when that is not it: an unchanged cell
// costs a pass over memory, not one hash lookup per element.
type tracked[K, V comparable] struct {
	render func(K, V) nft.Element
	index  map[K]int32
	slots  []trackedSlot[K, V]
	free   []int32 // slots of keys gone
	stamp  uint64
	seen   int // keys put in this plan
	delta  nft.SetDelta
	els    []nft.Element // the elements of the last plan
	built  bool
	// spare is the element slice of the plan before the last, reused by
	// the next plan that changes the set: a new 1.6 MB slice per change at
	// 50,000 elements costs page faults and garbage collection, which made
	// most of the plan's latency tail.
	spare []nft.Element
	// seq is the slots in the order the previous plan put them, next
	// this plan's; pos is each slot's place in seq (-1: not in it), and
	// cursor the place in seq of the key expected next.
	seq, next []int32
	pos       []int32
	cursor    int
}

type trackedSlot[K, V comparable] struct {
	key   K
	value V
	stamp uint64 // 0: free
	el    nft.Element
}

func newTracked[K, V comparable](render func(K, V) nft.Element) tracked[K, V] {
	return tracked[K, V]{render: render, index: map[K]int32{}}
}

func (t *tracked[K, V]) begin(stamp uint64) {
	t.stamp, t.seen, t.cursor = stamp, 0, 0
	t.delta = nft.SetDelta{}
	t.next = t.next[:0]
}

// has reports whether this plan put k already.
func (t *tracked[K, V]) has(k K) bool {
	i, ok := t.index[k]
	return ok && t.slots[i].stamp == t.stamp
}

// find returns k's slot, or -1.
func (t *tracked[K, V]) find(k K) int32 {
	if t.cursor < len(t.seq) {
		if i := t.seq[t.cursor]; t.slots[i].key == k {
			t.cursor++
			return i
		}
	}
	i, ok := t.index[k]
	if !ok {
		return -1
	}
	if p := t.pos[i]; p >= 0 {
		t.cursor = int(p) + 1
	}
	return i
}

// put adds k with value v to this plan, unless the plan has it already
// (the first value put wins).
func (t *tracked[K, V]) put(k K, v V) {
	i := t.find(k)
	if i < 0 {
		el := t.render(k, v)
		slot := trackedSlot[K, V]{key: k, value: v, stamp: t.stamp, el: el}
		if n := len(t.free); n > 0 {
			i, t.free = t.free[n-1], t.free[:n-1]
			t.slots[i] = slot
		} else {
			i = int32(len(t.slots))
			t.slots = append(t.slots, slot)
			t.pos = append(t.pos, -1)
		}
		t.index[k] = i
		t.seen++
		t.next = append(t.next, i)
		t.delta.Put = append(t.delta.Put, el)
		return
	}
	s := &t.slots[i]
	if s.stamp == t.stamp {
		return
	}
	s.stamp = t.stamp
	t.seen++
	t.next = append(t.next, i)
	if s.value != v {
		s.value, s.el = v, t.render(k, v)
		t.delta.Put = append(t.delta.Put, s.el)
	}
}

// end forgets the keys this plan did not put, gives s this plan's
// elements, records in delta what changed since the previous plan, and
// returns s.
func (t *tracked[K, V]) end(s *nft.Set, delta *nft.Delta) *nft.Set {
	for _, i := range t.seq {
		t.pos[i] = -1
	}
	if t.seen < len(t.index) {
		for i := range t.slots {
			sl := &t.slots[i]
			if sl.stamp != 0 && sl.stamp != t.stamp {
				t.delta.Del = append(t.delta.Del, sl.el.Key)
				delete(t.index, sl.key)
				*sl = trackedSlot[K, V]{}
				t.free = append(t.free, int32(i))
			}
		}
	}
	for p, i := range t.next {
		t.pos[i] = int32(p)
	}
	t.seq, t.next = t.next, t.seq
	changed := len(t.delta.Put) > 0 || len(t.delta.Del) > 0
	if changed || !t.built {
		els := t.spare[:0]
		if cap(els) < len(t.seq) {
			els = make([]nft.Element, 0, len(t.seq)+len(t.seq)/8)
		}
		for _, i := range t.seq {
			els = append(els, t.slots[i].el)
		}
		clear(els[len(els):cap(els)]) // no stale strings kept alive
		t.spare, t.els = t.els, els
		t.built = true
	}
	s.Elements = t.els
	if changed {
		d := t.delta
		delta.Sets[s.Name] = &d
	}
	return s
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func a4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func withReason(data map[string]any, reason string) map[string]any {
	data["reason"] = reason
	return data
}
