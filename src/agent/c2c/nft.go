package c2c

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/nft"
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
)

// NFTScope is everything the c2c sync owns in netman's table.
var NFTScope = nft.PrefixScope([]string{nft.ChainC2C}, "c2c-")

// NewNFTEnforcer returns the enforcer of the c2c part of the table. The
// agent's c2c cycle calls PlanNFT and then Enforce(ctx, plan, nil).
func NewNFTEnforcer(d nft.Driver) *nft.Enforcer { return nft.NewEnforcer(d, NFTScope) }

type nftPolicyKey struct {
	mark  uint32
	ip    netip.Addr
	proto uint8
}

type nftSingleKey struct {
	nftPolicyKey
	port uint16
}

type nftLogKey struct {
	mark uint32
	ip   netip.Addr
}

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
//
// Errors and warnings are Plan's: bad ports metadata fails the plan;
// unusable entries (a bad IP or tag, a protocol without ports, a port
// range nft cannot hold) are dropped and reported through warn.
func PlanNFT(in Inputs, warn Warn) (*nft.Ruleset, error) {
	if warn == nil {
		warn = func(string, map[string]any) {}
	}
	tags := map[netip.Addr]uint32{}
	ports := map[nftPolicyKey][]nft.Box{} // ranges of more than one port
	singles := map[nftSingleKey]bool{}
	prefixes := map[nftLogKey]string{}
	var ingressMark uint32
	if in.IngressTag != "" {
		m, err := nft.ParseTag(in.IngressTag)
		if err != nil {
			return nil, fmt.Errorf("ingress tag: %w", err)
		}
		ingressMark = m
	}
	badIP := map[string]bool{}
	parseIP := func(kind, s string, data map[string]any) (netip.Addr, bool) {
		ip, err := netip.ParseAddr(s)
		if err != nil || !ip.Is4() {
			if !badIP[kind+s] {
				badIP[kind+s] = true
				warn(kind, withReason(data, "bad IP"))
			}
			return netip.Addr{}, false
		}
		return ip, true
	}
	// The policies naming each app as source or destination, in their
	// order: a container visits those only, not every policy.
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
			if c.AppID == p.Source.ID {
				if ip, ok := parseIP("skipping-source", c.IP, map[string]any{"ip": c.IP, "app": p.Source.ID}); ok {
					if _, seen := tags[ip]; !seen {
						m, err := nft.ParseTag(p.Source.Tag)
						if err != nil {
							warn("skipping-source", map[string]any{"ip": c.IP, "app": p.Source.ID, "reason": "bad tag"})
						} else {
							tags[ip] = m
						}
					}
				}
			}
			if c.AppID != p.Destination.ID {
				continue
			}
			ip, ok := parseIP("skipping-destination", c.IP, map[string]any{"ip": c.IP, "app": p.Destination.ID})
			if !ok {
				continue
			}
			d := p.Destination
			proto, ok := nft.ProtoNumber(d.Protocol)
			if !ok || proto == 1 {
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "protocol": d.Protocol, "reason": "protocol has no ports"})
				continue
			}
			if d.Start < 0 || d.End > 65535 || d.Start > d.End {
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "ports": fmt.Sprintf("%d-%d", d.Start, d.End), "reason": "bad port range"})
				continue
			}
			mark, err := nft.ParseTag(p.Source.Tag)
			if err != nil {
				warn("skipping-destination", map[string]any{"ip": c.IP, "app": d.ID, "reason": "bad source tag"})
				continue
			}
			k := nftPolicyKey{mark, ip, proto}
			if d.Start == d.End {
				singles[nftSingleKey{k, uint16(d.Start)}] = true
			} else {
				ports[k] = append(ports[k], nft.Box{{Lo: uint32(d.Start), Hi: uint32(d.End)}})
			}
			if in.Logging {
				lk := nftLogKey{mark, ip}
				// Plan orders destinations by their JSON, so the first
				// prefix of a (tag, destination) wins; keep the least.
				pfx := "OK_" + p.Source.Tag + "_" + d.ID
				if old, ok := prefixes[lk]; !ok || pfx < old {
					prefixes[lk] = pfx
				}
			}
		}
		if in.IngressTag != "" && c.Ports != "" {
			for _, s := range strings.Split(c.Ports, ",") {
				port, err := strconv.Atoi(strings.TrimSpace(s))
				if err != nil {
					return nil, fmt.Errorf("converting container metadata port to int: %w", err)
				}
				ip, ok := parseIP("skipping-ingress", c.IP, map[string]any{"ip": c.IP})
				if !ok || port < 0 || port > 65535 {
					continue
				}
				singles[nftSingleKey{nftPolicyKey{ingressMark, ip, 6}, uint16(port)}] = true
			}
		}
	}

	rs := &nft.Ruleset{}
	tagSet := &nft.Set{Name: NFTTags, Type: "ipv4_addr", Value: "mark"}
	for ip, m := range tags {
		tagSet.Elements = append(tagSet.Elements, nft.Element{Key: nft.Addr(ip), Value: nft.Mark(m)})
	}
	policySet := &nft.Set{Name: NFTPolicies, Type: "mark . ipv4_addr . inet_proto . inet_service"}
	for s := range singles {
		policySet.Elements = append(policySet.Elements, nft.Element{
			Key: nft.Key(nft.Mark(s.mark), nft.Addr(s.ip), nft.Proto(s.proto), nft.Range(uint32(s.port), uint32(s.port)))})
	}
	rangeSet := &nft.Set{Name: NFTPolicyRanges, Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true}
	for k, boxes := range ports {
		for _, b := range nft.Disjoint(boxes) {
			rangeSet.Elements = append(rangeSet.Elements, nft.Element{
				Key: nft.Key(nft.Mark(k.mark), nft.Addr(k.ip), nft.Proto(k.proto), nft.Range(b[0].Lo, b[0].Hi))})
		}
	}
	rs.Sets = append(rs.Sets, tagSet, policySet, rangeSet)

	var chain []string
	if in.DisableNetworkPolicy {
		p, err := netip.ParsePrefix(in.OverlayNetwork)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("overlay network %q: not an IPv4 CIDR", in.OverlayNetwork)
		}
		o := nft.Prefix(p)
		chain = append(chain, "ip saddr "+o+" ip daddr "+o+" accept")
	}
	chain = append(chain, "meta mark set ip saddr map @"+NFTTags)
	// The hash set first: most policies are single-port.
	lookups := []string{
		"meta mark . ip daddr . meta l4proto . th dport @" + NFTPolicies,
		"meta mark . ip daddr . meta l4proto . th dport @" + NFTPolicyRanges,
	}
	verdict := " accept"
	if in.Logging {
		verdict = " jump " + NFTLogged
	}
	for _, l := range lookups {
		chain = append(chain, l+verdict)
	}
	if !in.Logging {
		rs.Chains = append(rs.Chains, &nft.Chain{Name: nft.ChainC2C, Rules: chain})
		return rs, nil
	}
	rs.Chains = append(rs.Chains,
		&nft.Chain{Name: nft.ChainC2C, Rules: chain},
		&nft.Chain{Name: NFTLogged, Rules: []string{"meta mark . ip daddr vmap @" + NFTLog, "accept"}})
	logMap := &nft.Set{Name: NFTLog, Type: "mark . ipv4_addr", Value: "verdict"}
	var logChains []*nft.Chain
	for k, pfx := range prefixes {
		name := fmt.Sprintf("%s%x--%s", nftLogChainPrefix, k.mark, k.ip)
		logMap.Elements = append(logMap.Elements, nft.Element{Key: nft.Key(nft.Mark(k.mark), nft.Addr(k.ip)), Value: nft.Jump(name)})
		logChains = append(logChains, &nft.Chain{Name: name, Rules: []string{
			"meta l4proto tcp ct state invalid,new,untracked log prefix " + nft.LogPrefix(pfx),
			"meta l4proto udp " + nft.LimitedLog(in.AcceptedUDPLogsPerSec, pfx),
		}})
	}
	slices.SortFunc(logChains, func(a, b *nft.Chain) int { return strings.Compare(a.Name, b.Name) })
	rs.Sets = append(rs.Sets, logMap)
	rs.Chains = append(rs.Chains, logChains...)
	return rs, nil
}

func withReason(data map[string]any, reason string) map[string]any {
	data["reason"] = reason
	return data
}
