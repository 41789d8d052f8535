// Package c2c is the container-to-container half of vxlan-policy-agent: a
// pure planner that turns the cell's containers and their policies into
// upstream's rule list, and an enforcer that keeps the agent's `vpa--<T>`
// chain (jumped from FORWARD position 1) equal to that list.
//
// Rule text and order are upstream's (silk.md §5.5). The enforcer is not:
// upstream writes a fresh timestamped chain with every rule on every change
// (O(rules on the cell)); netman edits the live chain with only the rules
// that changed, in one iptables-restore transaction (O(change)), so there is
// never a moment with no rules or with both old and new ones.
package c2c

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Container is a container on this cell with a policy group (app) id, as
// the metadata store records it.
type Container struct {
	Handle   string
	IP       string
	AppID    string // metadata policy_group_id
	SpaceID  string // metadata space_id
	Ports    string // metadata ports: comma-separated container ports
	Workload string // metadata container_workload
}

// Policy is one policy as the internal API returns it.
type Policy struct {
	Source      Endpoint
	Destination Destination
}

// Endpoint is a policy's source.
type Endpoint struct{ ID, Tag string }

// Destination is a policy's destination.
type Destination struct {
	ID, Tag, Protocol string
	Start, End        int
}

// Inputs is everything a plan depends on.
type Inputs struct {
	Containers []Container
	Policies   []Policy
	// IngressTag is the router's tag (hex) when overlay ingress rules are
	// enabled, "" otherwise.
	IngressTag string
	// Logging adds an OK_ LOG rule before every accept (iptables_c2c_logging,
	// togglable at runtime).
	Logging               bool
	AcceptedUDPLogsPerSec int
	DisableNetworkPolicy  bool
	OverlayNetwork        string // CIDR, used when DisableNetworkPolicy
	// IPv6 is the dual-stack overlay (ipv6_overlay_network); the zero
	// Network is IPv4 only. When enabled every container also has its
	// derived IPv6 address and the policies apply to it too: PlanChains6
	// (ip6tables) and the ip6 sets of PlanNFT.
	IPv6 overlay6.Network
}

// Warn receives problems that drop part of the plan (never the whole plan).
type Warn func(msg string, data map[string]any)

type source struct {
	IP   string
	Tag  string
	GUID string
}

type destination struct {
	IP                 string
	StartPort, EndPort int
	GUID               string
	SourceGUID         string
	Protocol           string
	SourceTag          string
}

type ingress struct {
	IngressTag string
	IP         string
	Protocol   string
	Port       int
}

// Plan returns the rules of the agent's chain, in upstream's order:
// [overlay accept-all when policy is disabled], one MARK rule per local
// source container, per local destination container and policy an
// [OK_ LOG and an] ACCEPT, then router ingress accepts. Sources,
// destinations and ingress entries are each ordered by their JSON form, as
// upstream sorts them, so the list is stable from cycle to cycle and an
// unchanged cell plans an identical list. Exact duplicate rules (which
// upstream would write twice) are kept once.
//
// An error means the plan cannot be trusted (a container's ports metadata
// is not a list of integers, as upstream fails the cycle); entries that
// are merely unusable (a protocol iptables cannot match by port) are
// dropped and reported through warn.
func Plan(in Inputs, warn Warn) ([]iptables.Rule, error) {
	p, err := PlanChains(in, warn, false)
	return p.Main, err
}

// Chains is a plan for the agent's chains: the vpa-- chain's rules (Main)
// and, with per-destination chains, each destination container's chain
// (named by DstChainName) with the policy rules for it, in planned order.
type Chains struct {
	Main []iptables.Rule
	Dst  map[string][]iptables.Rule
}

// Size is the number of rules in all the chains.
func (c Chains) Size() int {
	n := len(c.Main)
	for _, rs := range c.Dst {
		n += len(rs)
	}
	return n
}

// DstChainPrefix starts the name of a destination container's chain
// (iptables_per_destination_chains): vpa-dst-<container IP>.
const DstChainPrefix = "vpa-dst-"

// DstChainName is the chain holding the policy rules for destination ip.
func DstChainName(ip netip.Addr) string { return DstChainPrefix + ip.String() }

// dstChainRe matches the chains DstChainName makes (IPv4; at most 28
// characters, iptables' limit for a chain name).
var dstChainRe = regexp.MustCompile(`^vpa-dst-[0-9]{1,3}(\.[0-9]{1,3}){3}$`)

// IsDstChain reports whether name is a destination container's chain.
func IsDstChain(name string) bool { return dstChainRe.MatchString(name) }

// PlanChains is Plan, optionally with per-destination chains
// (iptables_per_destination_chains). With perDst false, Main is exactly
// Plan's list and Dst is empty. With perDst true, each destination's OK_
// LOG and ACCEPT rules move, in their planned order, into that destination's
// chain, and Main holds, where the destination's first rule was, one rule
// jumping there by destination address: "-d <ip>/32 -j vpa-dst-<ip>". A
// packet meets the same rules in the same order as in the single chain (a
// rule with "-d <ip>" matches only packets to ip), so what is accepted and
// logged is unchanged; a policy change rewrites only its destination's
// small chain, which iptables-nft-restore edits without fetching the rest.
func PlanChains(in Inputs, warn Warn, perDst bool) (Chains, error) {
	if warn == nil {
		warn = func(string, map[string]any) {}
	}
	var srcs []source
	var dsts []destination
	var ings []ingress
	seenSrc := map[string]bool{}
	// The policies naming each app as source or destination, in their
	// order: a container visits those only, not every policy (the same
	// matches in the same order as walking them all).
	byApp := map[string][]int{}
	for i, p := range in.Policies {
		byApp[p.Source.ID] = append(byApp[p.Source.ID], i)
		if p.Destination.ID != p.Source.ID {
			byApp[p.Destination.ID] = append(byApp[p.Destination.ID], i)
		}
	}
	for _, c := range in.Containers {
		for _, i := range byApp[c.AppID] {
			p := in.Policies[i]
			if c.AppID == p.Source.ID && !seenSrc[c.IP] {
				seenSrc[c.IP] = true
				srcs = append(srcs, source{IP: c.IP, Tag: p.Source.Tag, GUID: p.Source.ID})
			}
			if c.AppID == p.Destination.ID {
				dsts = append(dsts, destination{
					IP: c.IP, StartPort: p.Destination.Start, EndPort: p.Destination.End,
					GUID: p.Destination.ID, SourceGUID: p.Source.ID,
					Protocol: p.Destination.Protocol, SourceTag: p.Source.Tag,
				})
			}
		}
		if in.IngressTag != "" && c.Ports != "" {
			for _, s := range strings.Split(c.Ports, ",") {
				port, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return Chains{}, fmt.Errorf("converting container metadata port to int: %w", err)
				}
				ings = append(ings, ingress{IngressTag: in.IngressTag, IP: c.IP, Protocol: "tcp", Port: port})
			}
		}
	}
	sortByJSON(srcs)
	sortByJSON(dsts)
	sortByJSON(ings)

	out := make([]iptables.Rule, 0, 1+len(srcs)+2*len(dsts)+len(ings))
	seen := make(map[iptables.Rule]bool, cap(out))
	add := func(r iptables.Rule) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	var dstChains map[string][]iptables.Rule
	if perDst {
		dstChains = map[string][]iptables.Rule{}
	}
	// addDst adds a destination's policy rule: to Main, or to the
	// destination's chain. A chain is named by the container's IPv4
	// address: in ip6tables too (PlanChains6), since a name with an IPv6
	// address would be longer than iptables allows; an IPv6 address
	// outside the overlay has no such name and its rules stay in Main.
	addDst := func(ip netip.Addr, r iptables.Rule) {
		named := ip
		if ip.Is6() {
			named, _ = in.IPv6.IPv4(ip)
		}
		if !perDst || !named.Is4() {
			add(r)
			return
		}
		if seen[r] {
			return
		}
		seen[r] = true
		name := DstChainName(named)
		if _, ok := dstChains[name]; !ok {
			add(iptables.Rule("-d " + host(ip) + " -j " + name))
		}
		dstChains[name] = append(dstChains[name], r)
	}
	if in.DisableNetworkPolicy {
		add(OverlayAcceptAll(in.OverlayNetwork))
	}
	for _, s := range srcs {
		ip, err := netip.ParseAddr(s.IP)
		if err != nil {
			warn("skipping-source", map[string]any{"ip": s.IP, "app": s.GUID, "reason": "bad IP"})
			continue
		}
		add(MarkSource(ip, s.Tag, s.GUID))
	}
	for _, d := range dsts {
		ip, err := netip.ParseAddr(d.IP)
		if err != nil {
			warn("skipping-destination", map[string]any{"ip": d.IP, "app": d.GUID, "reason": "bad IP"})
			continue
		}
		if d.Protocol != "tcp" && d.Protocol != "udp" {
			warn("skipping-destination", map[string]any{"ip": d.IP, "app": d.GUID, "protocol": d.Protocol, "reason": "protocol has no ports"})
			continue
		}
		if in.Logging {
			addDst(ip, AllowLog(ip, d.Protocol, d.StartPort, d.EndPort, d.SourceTag, d.GUID, in.AcceptedUDPLogsPerSec))
		}
		addDst(ip, Allow(ip, d.Protocol, d.StartPort, d.EndPort, d.SourceTag, d.SourceGUID, d.GUID))
	}
	for _, g := range ings {
		ip, err := netip.ParseAddr(g.IP)
		if err != nil {
			warn("skipping-ingress", map[string]any{"ip": g.IP, "reason": "bad IP"})
			continue
		}
		add(AllowIngress(ip, g.Port, g.IngressTag))
	}
	return Chains{Main: out, Dst: dstChains}, nil
}

// PlanChains6 is PlanChains for ip6tables on a dual-stack cell: the same
// rules in the same order, for each container's IPv6 address (in.IPv6's
// mapping of its IPv4 one), with the IPv6 overlay for the accept-all of a
// disabled network policy. Per-destination chains keep the IPv4 chain
// names (vpa-dst-<IPv4 address>, in ip6tables). IPv4 only (in.IPv6 zero)
// plans nothing. Entries PlanChains drops are dropped here too, without a
// second warning.
func PlanChains6(in Inputs, perDst bool) (Chains, error) {
	if !in.IPv6.Enabled() {
		return Chains{}, nil
	}
	in6 := in
	in6.Containers = make([]Container, 0, len(in.Containers))
	for _, c := range in.Containers {
		ip, err := netip.ParseAddr(c.IP)
		if err != nil || !ip.Unmap().Is4() {
			continue // PlanChains warns about it
		}
		c.IP = in.IPv6.Addr(ip).String()
		in6.Containers = append(in6.Containers, c)
	}
	in6.OverlayNetwork = in.IPv6.String()
	return PlanChains(in6, nil, perDst)
}

// host renders a single-address match: /32 for IPv4, /128 for IPv6, as
// iptables-save and ip6tables-save print them.
func host(a netip.Addr) string {
	if a.Is4() {
		return rules.Host(a)
	}
	return a.String() + "/128"
}

// sortByJSON orders elements by their JSON encoding, as upstream does; each
// element is encoded once.
func sortByJSON[T any](s []T) {
	if len(s) < 2 {
		return
	}
	type keyed struct {
		key string
		v   T
	}
	ks := make([]keyed, len(s))
	for i, v := range s {
		b, _ := json.Marshal(v) // plain structs of strings and ints
		ks[i] = keyed{string(b), v}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int { return strings.Compare(a.key, b.key) })
	for i := range ks {
		s[i] = ks[i].v
	}
}

// comment renders a comment match; iptables-save quotes text with anything
// but letters, digits, '-' and '_', and upstream replaces spaces with '_'.
func comment(text string) string {
	text = strings.ReplaceAll(text, " ", "_")
	plain := text != ""
	for _, r := range text {
		if !(r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			plain = false
			break
		}
	}
	if plain {
		return "-m comment --comment " + text
	}
	return "-m comment --comment " + strconv.Quote(text)
}

// ports renders a destination port match for proto.
func ports(proto string, start, end int) string {
	p := "-p " + proto + " -m " + proto + " --dport " + strconv.Itoa(start)
	if end != start {
		p += ":" + strconv.Itoa(end)
	}
	return p
}

// OverlayAcceptAll accepts all traffic inside the overlay
// (disable_container_network_policy); overlay is a validated CIDR.
func OverlayAcceptAll(overlay string) iptables.Rule {
	p, err := netip.ParsePrefix(overlay)
	if err != nil {
		return iptables.Rule("-s " + overlay + " -d " + overlay + " -j ACCEPT")
	}
	return rules.OverlayAcceptAll(p)
}

// MarkSource marks packets from a source app's container with its tag.
func MarkSource(ip netip.Addr, tag, appGUID string) iptables.Rule {
	return iptables.Rule("-s " + host(ip) + " " + comment("src:"+appGUID) +
		" -j MARK --set-xmark " + rules.Mark(tag) + "/0xffffffff")
}

// Allow accepts packets marked with a source tag to a destination
// container's protocol and port range.
func Allow(ip netip.Addr, proto string, start, end int, srcTag, srcGUID, dstGUID string) iptables.Rule {
	return iptables.Rule("-d " + host(ip) + " " + ports(proto, start, end) +
		" -m mark --mark " + rules.Mark(srcTag) + " " + comment("src:"+srcGUID+"_dst:"+dstGUID) + " -j ACCEPT")
}

// AllowLog logs what Allow is about to accept: the first packet of each
// TCP connection, or UDP packets at most udpPerSec a second.
func AllowLog(ip netip.Addr, proto string, start, end int, srcTag, dstGUID string, udpPerSec int) iptables.Rule {
	var limit string
	if proto == "udp" {
		limit = fmt.Sprintf("-m limit --limit %d/sec --limit-burst %d", udpPerSec, udpPerSec)
	} else {
		limit = "-m conntrack --ctstate INVALID,NEW,UNTRACKED"
	}
	return iptables.Rule("-d " + host(ip) + " " + ports(proto, start, end) +
		" -m mark --mark " + rules.Mark(srcTag) + " " + limit + " -j LOG --log-prefix " + rules.LogPrefix("OK_"+srcTag+"_"+dstGUID))
}

// AllowIngress accepts router traffic (marked with the ingress tag) to a
// container's port.
func AllowIngress(ip netip.Addr, port int, ingressTag string) iptables.Rule {
	return iptables.Rule("-d " + host(ip) + " " + ports("tcp", port, port) + " -m mark --mark " + rules.Mark(ingressTag) + " -j ACCEPT")
}

// Entries is what a plan enforces, by meaning rather than by rule text:
// the source containers it marks and the policy rules it installs for
// each destination container (the debug server's /c2c-enforced).
type Entries struct {
	Sources      []SourceEntry
	Destinations []DestinationEntry
}

// SourceEntry is a local container marked with its app's tag.
type SourceEntry struct {
	IP, AppID, Tag string
}

// DestinationEntry is one allow rule to a local container: packets
// marked with SourceTag to Protocol ports Start-End.
type DestinationEntry struct {
	IP, AppID           string
	SourceID, SourceTag string
	Protocol            string
	Start, End          int
}

// PlannedEntries lists what PlanChains(in) enforces: the same containers
// and policies, with the same ones dropped (bad addresses, protocols
// without ports), ordered by container address, then source tag and
// ports. Both backends enforce exactly these.
func PlannedEntries(in Inputs) Entries {
	var e Entries
	if in.DisableNetworkPolicy {
		return e
	}
	byApp := map[string][]int{}
	for i, p := range in.Policies {
		byApp[p.Source.ID] = append(byApp[p.Source.ID], i)
		if p.Destination.ID != p.Source.ID {
			byApp[p.Destination.ID] = append(byApp[p.Destination.ID], i)
		}
	}
	seenSrc := map[string]bool{}
	seenDst := map[DestinationEntry]bool{}
	for _, c := range in.Containers {
		if _, err := netip.ParseAddr(c.IP); err != nil {
			continue
		}
		for _, i := range byApp[c.AppID] {
			p := in.Policies[i]
			if c.AppID == p.Source.ID && !seenSrc[c.IP] {
				seenSrc[c.IP] = true
				e.Sources = append(e.Sources, SourceEntry{IP: c.IP, AppID: c.AppID, Tag: p.Source.Tag})
			}
			if c.AppID == p.Destination.ID && (p.Destination.Protocol == "tcp" || p.Destination.Protocol == "udp") {
				d := DestinationEntry{
					IP: c.IP, AppID: c.AppID, SourceID: p.Source.ID, SourceTag: p.Source.Tag,
					Protocol: p.Destination.Protocol, Start: p.Destination.Start, End: p.Destination.End,
				}
				if !seenDst[d] {
					seenDst[d] = true
					e.Destinations = append(e.Destinations, d)
				}
			}
		}
	}
	slices.SortStableFunc(e.Sources, func(a, b SourceEntry) int { return strings.Compare(a.IP, b.IP) })
	slices.SortStableFunc(e.Destinations, func(a, b DestinationEntry) int {
		if c := strings.Compare(a.IP, b.IP); c != 0 {
			return c
		}
		if c := strings.Compare(a.SourceTag, b.SourceTag); c != 0 {
			return c
		}
		return a.Start - b.Start
	})
	return e
}
