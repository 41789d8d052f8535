package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
)

// Egress describes a container's egress chain: cni-wrapper-plugin's
// netout--<handle> when it applies garden's netOut rules itself, and
// vxlan-policy-agent's asg--<handle> for security groups. Verdict for
// verdict it is the iptables chain (rules.NetOutChain): established
// traffic, tcp INVALID drop, the connection rate limit, the deny networks,
// the accepted destinations, the DENY_ log, the final reject. The accepted
// destinations are six interval sets instead of one rule each: tcp/udp by
// address, protocol and port range, icmp by address, type and code, all
// protocols by address; each in a logged and an unlogged variant.
//
// Where sets differ from first-match order: iptables takes the first
// accepting rule, so a destination both a logged and an unlogged rule allow
// is logged or not depending on rule order. Here the logged sets are
// looked up first, so it is always logged: a log line too many is the safe
// side of an audit trail. Every verdict (accept, reject, drop) is the same.
type Egress struct {
	Chain    string // netout--<handle> or asg--<handle>
	Handle   string // container handle, for log prefixes
	Workload string // container_workload: app, task, staging
	Deny     rules.DenyNetworks
	Conn     rules.OutConn
	// ASGLogging logs every accepted connection and the denied ones.
	ASGLogging            bool
	DeniedLogsPerSec      int
	AcceptedUDPLogsPerSec int
	// OverlayAcceptAll, when valid, accepts overlay-to-overlay traffic
	// first (the agent with disable_container_network_policy).
	OverlayAcceptAll netip.Prefix
	// SharedSets names the six destination sets after their content
	// (SharedSetsName) instead of after the chain, so every chain with the
	// same destinations looks up the same sets: a chain whose destinations
	// are already in the table adds no element. Only the rate meter stays
	// the chain's own. cni-wrapper-plugin's netout--<handle> uses it.
	SharedSets bool
	// Sets, when set, names the six destination sets <Sets>--ports ...
	// instead of after the chain: the agent's sets of one space and
	// lifecycle, shared by its containers.
	Sets string
	// IPv6 is set on a dual-stack cell: the chain also filters IPv6
	// egress, with six more destination sets of IPv6 ranges (--ports6,
	// --icmp6, --all6, each logged and not), the IPv6 deny networks and
	// a second rate meter keyed by IPv6 destination.
	IPv6 bool
	// OverlayAcceptAll6, when valid, accepts IPv6 overlay-to-overlay
	// traffic first (OverlayAcceptAll's twin).
	OverlayAcceptAll6 netip.Prefix
}

// RejectIPv6 is how nft lists a reject after an IPv6 match.
const RejectIPv6 = "reject with icmpv6 port-unreachable"

// SharedSetPrefix starts the name of every shared destination set
// (egress-<hash>--ports, ...): cni-wrapper-plugin adds them with the first
// chain that looks them up and removes them when the last one goes.
const SharedSetPrefix = "egress-"

// LogChain is <chain>--log, which logs accepted connections (OK_) and
// accepts them.
func (e Egress) LogChain() string { return e.Chain + "--log" }

// RateLimitChain is <chain>--rl-log, where connections over the rate
// limit go (DENY_ORL_ log, reject unless dry-run).
func (e Egress) RateLimitChain() string { return e.Chain + "--rl-log" }

func (e Egress) meterSet() string { return e.Chain + "--rl" }

func (e Egress) meterSet6() string { return e.Chain + "--rl6" }

// setName names one of the six destination sets: <base>--ports,
// <base>--ports-log, <base>--icmp, ..., where base is the chain or, with
// SharedSets, egress-<hash>.
func setName(base, kind string, logged bool) string {
	if logged {
		return base + "--" + kind + "-log"
	}
	return base + "--" + kind
}

// Destinations is the accepted egress of a container as disjoint boxes,
// computed once per rule list and shared by every container with the same
// list (the security groups of one space and lifecycle).
type Destinations struct {
	// Ports: address . protocol . port; ICMP: address . type . code; All:
	// address. Index 0 unlogged, 1 logged.
	Ports, ICMP, All [2][]Box
	// The IPv6 destinations (ConvertDual): address . protocol . port,
	// address . ICMPv6 type . code, address.
	Ports6, ICMP6, All6 [2][]Box6
	Warnings            []string
}

// Convert turns egress rules into Destinations, as rules.ConvertNetOut
// does for iptables: the same rules are dropped with the same warnings
// (tcp/udp without ports, icmp without type/code or with ports, all with
// ports, non-IPv4 ranges). logAll marks every rule logged
// (iptables_asg_logging). ICMP type 255 is any type and code; otherwise
// the code must equal the rule's, as iptables' "--icmp-type T/C" matches
// (code 255 included: upstream's "type 3, code -1" matches code 255 only,
// in both modes).
func Convert(rs []rules.NetOutRule, logAll bool) *Destinations {
	return ConvertDual(rs, logAll, false)
}

// ConvertDual is Convert for a dual-stack cell when ipv6 is true: IPv6
// ranges go to the IPv6 destinations instead of being skipped, icmp rules
// match only IPv4 destinations and icmpv6 rules only IPv6 ones (each
// skipped silently for the other family), tcp, udp and all follow the
// destination. A range mixing the families is skipped with a warning.
func ConvertDual(rs []rules.NetOutRule, logAll bool, ipv6 bool) *Destinations {
	d := &Destinations{}
	var ports, icmp, all [2][]Box
	var ports6, icmp6, all6 [2][]Box6
	for _, r := range rs {
		lg := 0
		if r.Log || logAll {
			lg = 1
		}
		for _, n := range r.Networks {
			fam, ok := n.Family()
			if ipv6 && !ok {
				d.Warnings = append(d.Warnings, fmt.Sprintf("skipping range %s-%s mixing IPv4 and IPv6 in %s rule", n.Start, n.End, r.Protocol))
				continue
			}
			if ipv6 && fam == iptables.IPv6 {
				convert6(d, r, n, &ports6[lg], &icmp6[lg], &all6[lg])
				continue
			}
			if !n.Start.Is4() || !n.End.Is4() {
				d.Warnings = append(d.Warnings, fmt.Sprintf("skipping non-IPv4 range %s-%s in %s rule", n.Start, n.End, r.Protocol))
				continue
			}
			if r.Protocol == rules.ICMPv6 {
				continue // never matches IPv4
			}
			ip := Interval{u32(n.Start), u32(n.End)}
			kind, rests, ok := egressRule(d, r, rules.ICMP, "ICMP")
			if !ok {
				continue
			}
			to := [...]*[]Box{&ports[lg], &icmp[lg], &all[lg]}[kind]
			for _, rest := range rests {
				*to = append(*to, append(Box{ip}, rest...))
			}
		}
	}
	for lg := range 2 {
		d.Ports[lg] = Disjoint(ports[lg])
		d.ICMP[lg] = Disjoint(icmp[lg])
		d.All[lg] = Disjoint(all[lg])
		d.Ports6[lg] = Disjoint6(ports6[lg])
		d.ICMP6[lg] = Disjoint6(icmp6[lg])
		d.All6[lg] = Disjoint6(all6[lg])
	}
	return d
}

// convert6 adds one IPv6 range of r to the IPv6 boxes, with Convert's
// checks and warnings; icmp rules never match IPv6.
func convert6(d *Destinations, r rules.NetOutRule, n rules.IPRange, ports, icmp, all *[]Box6) {
	if r.Protocol == rules.ICMP {
		return
	}
	kind, rests, ok := egressRule(d, r, rules.ICMPv6, "ICMPv6")
	if !ok {
		return
	}
	to := [...]*[]Box6{ports, icmp, all}[kind]
	for _, rest := range rests {
		*to = append(*to, Box6{Lo: n.Start, Hi: n.End, Rest: rest})
	}
}

// The kinds of egress rule egressRule sorts into.
const (
	egressPorts = iota // protocol . port
	egressICMP         // ICMP type . code
	egressAll          // the address alone
)

// egressRule checks r as ConvertNetOut does (the same warnings) and
// returns its kind and the intervals after the destination address of each
// box it makes: protocol . port per port range, type . code for icmpProto
// (ICMP type 255: any type and code), none for all. icmpLabel names
// icmpProto in warnings.
func egressRule(d *Destinations, r rules.NetOutRule, icmpProto rules.Protocol, icmpLabel string) (kind int, rests []Box, ok bool) {
	switch r.Protocol {
	case rules.TCP, rules.UDP:
		if len(r.Ports) == 0 {
			d.Warnings = append(d.Warnings, fmt.Sprintf("UDP/TCP rule must specify ports: %+v", r))
			return 0, nil, false
		}
		p, _ := ProtoNumber(string(r.Protocol))
		for _, pr := range r.Ports {
			rests = append(rests, Box{{uint32(p), uint32(p)}, {uint32(pr.Start), uint32(pr.End)}})
		}
		return egressPorts, rests, true
	case icmpProto:
		if r.ICMP == nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s rule must specify ICMP type/code: %+v", icmpLabel, r))
			return 0, nil, false
		}
		if len(r.Ports) > 0 {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%s rule must not specify ports: %+v", icmpLabel, r))
			return 0, nil, false
		}
		t, c := Interval{uint32(r.ICMP.Type), uint32(r.ICMP.Type)}, Interval{uint32(r.ICMP.Code), uint32(r.ICMP.Code)}
		if r.ICMP.Type == 255 {
			t, c = Interval{0, 255}, Interval{0, 255}
		}
		return egressICMP, []Box{{t, c}}, true
	default:
		if len(r.Ports) > 0 {
			d.Warnings = append(d.Warnings, fmt.Sprintf("Rule for all protocols (TCP/UDP/ICMP) must not specify ports: %+v", r))
			return 0, nil, false
		}
		return egressAll, []Box{nil}, true
	}
}

// boxElements renders each box (Box or Box6) as a set element key.
func boxElements[B any](boxes []B, render func(B) string) []Element {
	out := make([]Element, len(boxes))
	for i, b := range boxes {
		out[i] = Element{Key: render(b)}
	}
	return out
}

// Ruleset returns the egress chain with its sets filled with dst, its log
// chain, and its rate-limit chain and meter when the config has them.
func (e Egress) Ruleset(dst *Destinations) *Ruleset {
	rs := &Ruleset{}
	renderPorts := func(b Box) string {
		return Key(addrRange(b[0].Lo, b[0].Hi), Proto(uint8(b[1].Lo)), Range(b[2].Lo, b[2].Hi))
	}
	renderICMP := func(b Box) string {
		return Key(addrRange(b[0].Lo, b[0].Hi), Range(b[1].Lo, b[1].Hi), Range(b[2].Lo, b[2].Hi))
	}
	// The all-protocol sets are concatenated with the protocol (always
	// 0-255): nft 1.0.6 lists the elements of every non-concatenated
	// interval set of the table before any transaction that adds or
	// deletes an element, which made such a transaction cost O(cell).
	renderAll := func(b Box) string { return Key(addrRange(b[0].Lo, b[0].Hi), Range(0, 255)) }
	if dst == nil {
		dst = &Destinations{}
	}
	renderPorts6 := func(b Box6) string {
		return Key(addrRange6(b.Lo, b.Hi), Proto(uint8(b.Rest[0].Lo)), Range(b.Rest[1].Lo, b.Rest[1].Hi))
	}
	renderICMP6 := func(b Box6) string {
		return Key(addrRange6(b.Lo, b.Hi), Range(b.Rest[0].Lo, b.Rest[0].Hi), Range(b.Rest[1].Lo, b.Rest[1].Hi))
	}
	renderAll6 := func(b Box6) string { return Key(addrRange6(b.Lo, b.Hi), Range(0, 255)) }
	var sets []*Set
	kinds := []string{"ports", "icmp", "all", "ports", "icmp", "all"}
	for _, lg := range []int{1, 0} {
		logged := lg == 1
		sets = append(sets,
			&Set{Name: setName(e.Chain, "ports", logged), Type: "ipv4_addr . inet_proto . inet_service", Interval: true, Elements: boxElements(dst.Ports[lg], renderPorts)},
			&Set{Name: setName(e.Chain, "icmp", logged), Type: "ipv4_addr . icmp_type . icmp_code", Interval: true, Elements: boxElements(dst.ICMP[lg], renderICMP)},
			&Set{Name: setName(e.Chain, "all", logged), Type: "ipv4_addr . inet_proto", Interval: true, Elements: boxElements(dst.All[lg], renderAll)},
		)
	}
	if e.IPv6 {
		for _, lg := range []int{1, 0} {
			logged := lg == 1
			sets = append(sets,
				&Set{Name: setName(e.Chain, "ports6", logged), Type: "ipv6_addr . inet_proto . inet_service", Interval: true, Elements: boxElements(dst.Ports6[lg], renderPorts6)},
				&Set{Name: setName(e.Chain, "icmp6", logged), Type: "ipv6_addr . icmpv6_type . icmpv6_code", Interval: true, Elements: boxElements(dst.ICMP6[lg], renderICMP6)},
				&Set{Name: setName(e.Chain, "all6", logged), Type: "ipv6_addr . inet_proto", Interval: true, Elements: boxElements(dst.All6[lg], renderAll6)},
			)
		}
		kinds = append(kinds, "ports6", "icmp6", "all6", "ports6", "icmp6", "all6")
	}
	base := e.Chain
	if e.Sets != "" {
		base = e.Sets
	}
	if e.SharedSets {
		base = SharedSetsName(sets)
	}
	for i, kind := range kinds {
		sets[i].Name = setName(base, kind, i%6 < 3)
	}
	rs.Sets = append(rs.Sets, sets...)
	set := func(kind string, logged bool) string { return setName(base, kind, logged) }

	var chain []string
	if e.OverlayAcceptAll.IsValid() {
		p := Prefix(e.OverlayAcceptAll)
		chain = append(chain, "ip saddr "+p+" ip daddr "+p+" accept")
	}
	if e.OverlayAcceptAll6.IsValid() {
		p := Prefix(e.OverlayAcceptAll6)
		chain = append(chain, "ip6 saddr "+p+" ip6 daddr "+p+" accept")
	}
	chain = append(chain, "ct state established,related accept", "meta l4proto tcp ct state invalid drop")
	if e.Conn.Limit || e.Conn.DryRun {
		target := RejectIPv4
		if e.Conn.Logging || e.Conn.DryRun {
			target = "jump " + e.RateLimitChain()
		}
		chain = append(chain, fmt.Sprintf("ct state new update @%s { ip daddr . tcp dport %s } %s",
			e.meterSet(), limit(true, e.Conn.RatePerSec, e.Conn.Burst), target))
		rs.Sets = append(rs.Sets, &Set{Name: e.meterSet(), Type: "ipv4_addr . inet_service", Dynamic: true,
			Timeout: e.meterTimeout(), Size: 65535})
		if e.IPv6 {
			target6 := RejectIPv6
			if e.Conn.Logging || e.Conn.DryRun {
				target6 = "jump " + e.RateLimitChain()
			}
			chain = append(chain, fmt.Sprintf("ct state new update @%s { ip6 daddr . tcp dport %s } %s",
				e.meterSet6(), limit(true, e.Conn.RatePerSec, e.Conn.Burst), target6))
			rs.Sets = append(rs.Sets, &Set{Name: e.meterSet6(), Type: "ipv6_addr . inet_service", Dynamic: true,
				Timeout: e.meterTimeout(), Size: 65535})
		}
	}
	if deny := e.denied(); deny != "" {
		chain = append(chain, "ip daddr "+deny+" "+RejectIPv4)
	}
	if deny := e.denied6(); deny != "" && e.IPv6 {
		chain = append(chain, "ip6 daddr "+deny+" "+RejectIPv6)
	}
	for _, lg := range []bool{true, false} {
		verdict := "accept"
		if lg {
			verdict = "goto " + e.LogChain()
		}
		chain = append(chain,
			"ip daddr . meta l4proto . th dport @"+set("ports", lg)+" "+verdict,
			"ip daddr . icmp type . icmp code @"+set("icmp", lg)+" "+verdict,
			"ip daddr . meta l4proto @"+set("all", lg)+" "+verdict)
		if e.IPv6 {
			chain = append(chain,
				"ip6 daddr . meta l4proto . th dport @"+set("ports6", lg)+" "+verdict,
				"ip6 daddr . icmpv6 type . icmpv6 code @"+set("icmp6", lg)+" "+verdict,
				"ip6 daddr . meta l4proto @"+set("all6", lg)+" "+verdict)
		}
	}
	if e.ASGLogging {
		chain = append(chain, LimitedLog(e.DeniedLogsPerSec, "DENY_"+e.Handle))
	}
	chain = append(chain, Reject)
	rs.Chains = append(rs.Chains, &Chain{Name: e.Chain, Rules: chain})

	rs.Chains = append(rs.Chains, &Chain{Name: e.LogChain(), Rules: []string{
		"meta l4proto != udp ct state invalid,new,untracked log prefix " + LogPrefix("OK_"+e.Handle),
		"meta l4proto udp " + LimitedLog(e.AcceptedUDPLogsPerSec, "OK_"+e.Handle),
		"accept",
	}})
	if e.Conn.RateLimitLogChainNeeded() {
		var rl []string
		if e.Conn.Logging || e.Conn.DryRun {
			rl = append(rl, LimitedLog(e.DeniedLogsPerSec, "DENY_ORL_"+e.Handle))
		}
		if !e.Conn.DryRun {
			rl = append(rl, Reject)
		}
		rs.Chains = append(rs.Chains, &Chain{Name: e.RateLimitChain(), Rules: rl})
	}
	return rs
}

// SharedSetsName is egress-<hash>: the hash (64 bits of SHA-256, hex) is
// of the six sets' types and elements in order, so equal destinations get
// equal names whatever chain asks, and different ones (in practice) never
// share one.
func SharedSetsName(sets []*Set) string {
	h := sha256.New()
	for _, s := range sets {
		fmt.Fprintf(h, "%s\x00%t\x00", s.Type, s.Interval)
		for _, el := range s.Elements {
			fmt.Fprintf(h, "%s\x00", el.Key)
		}
		h.Write([]byte{1})
	}
	return SharedSetPrefix + hex.EncodeToString(h.Sum(nil)[:8])
}

// Defaults is the chain's bottom (the optional DENY_ log and the reject):
// what the wrapper's netout--<handle> holds until its rules arrive.
func (e Egress) Defaults() []string {
	var out []string
	if e.ASGLogging {
		out = append(out, LimitedLog(e.DeniedLogsPerSec, "DENY_"+e.Handle))
	}
	return append(out, Reject)
}

// deniedNets is the workload's deny networks.
func (e Egress) deniedNets() []netip.Prefix {
	nets := append([]netip.Prefix(nil), e.Deny.Always...)
	switch e.Workload {
	case "app", "task":
		nets = append(nets, e.Deny.Running...)
	case "staging":
		nets = append(nets, e.Deny.Staging...)
	}
	return nets
}

// denied6 renders the workload's IPv6 deny networks as denied does.
func (e Egress) denied6() string {
	var boxes []Box6
	for _, p := range e.deniedNets() {
		if p.Addr().Is6() && !p.Addr().Is4In6() {
			boxes = append(boxes, Box6{Lo: p.Masked().Addr(), Hi: lastAddr(p)})
		}
	}
	merged := Disjoint6(boxes)
	switch len(merged) {
	case 0:
		return ""
	case 1:
		return addrRange6(merged[0].Lo, merged[0].Hi)
	}
	s := "{ "
	for i, b := range merged {
		if i > 0 {
			s += ", "
		}
		s += addrRange6(b.Lo, b.Hi)
	}
	return s + " }"
}

// denied renders the workload's IPv4 deny networks as one lookup: a single
// prefix, or an anonymous set of their disjoint union.
func (e Egress) denied() string {
	var boxes []Box
	for _, p := range e.deniedNets() {
		if !p.Addr().Is4() {
			continue
		}
		p = p.Masked()
		lo := u32(p.Addr())
		hi := lo | uint32(uint64(1)<<(32-p.Bits())-1)
		boxes = append(boxes, Box{{lo, hi}})
	}
	merged := Disjoint(boxes)
	switch len(merged) {
	case 0:
		return ""
	case 1:
		return addrRange(merged[0][0].Lo, merged[0][0].Hi)
	}
	s := "{ "
	for i, b := range merged {
		if i > 0 {
			s += ", "
		}
		s += addrRange(b[0].Lo, b[0].Hi)
	}
	return s + " }"
}

// meterTimeout is iptables' hashlimit-htable-expire: ceil(burst/rate)
// seconds.
func (e Egress) meterTimeout() time.Duration {
	if e.Conn.RatePerSec <= 0 {
		return time.Second
	}
	secs := (e.Conn.Burst + e.Conn.RatePerSec - 1) / e.Conn.RatePerSec
	return time.Duration(max(secs, 1)) * time.Second
}

// LimitedLog is iptables' "-m limit --limit N/sec --limit-burst N -j LOG".
func LimitedLog(perSec int, text string) string {
	return limit(false, perSec, perSec) + " log prefix " + LogPrefix(text)
}

// limit renders a packet rate limit as nft lists it: the burst is left
// out when it is nft's default of 5 packets.
func limit(over bool, perSec, burst int) string {
	s := "limit rate "
	if over {
		s += "over "
	}
	s += strconv.Itoa(perSec) + "/second"
	if burst != 5 {
		s += " burst " + strconv.Itoa(burst) + " packets"
	}
	return s
}
