// Package nft is netman's nftables data plane mechanism, the counterpart of
// src/iptables for cells that run `enforcement_backend: nftables`. It owns
// one table, `inet netman`, and owns the mechanics, not the policy: the
// table's skeleton (base chains and the dispatch maps they consult), a
// description of desired objects (Ruleset), a diff that turns the current
// objects into the desired ones inside one `nft -f` transaction touching
// only what changed, a Driver that runs transactions through
// sigs.k8s.io/knftables and reads the table back as a State, and a stateful
// Fake for tests.
//
// Who owns what: the skeleton belongs to this package and is re-asserted
// (constant, a handful of rules) by every writer; vxlan-policy-agent owns
// the c2c chains and sets (src/agent/c2c) and the asg-- chains and sets
// (src/agent/asg); cni-wrapper-plugin owns the per-container chains and the
// elements of the dispatch maps (src/cniwrapper). docs/nftables.md has the
// layout and how a packet is dispatched.
//
// The inet family holds the table: one table for both address families
// (a dual-stack container's IPv6 packets go through the same chains, by
// the IPv6 dispatch maps), and
// NAT in inet tables is supported on every kernel netman runs on (≥ 5.2).
package nft

import (
	"sigs.k8s.io/knftables"
)

// Family and TableName name netman's table.
const (
	Family    = knftables.InetFamily
	TableName = "netman"
)

// Base chains: one per hook netman filters at, each holding only constant
// dispatch rules. Priorities are the standard ones, the same numbers as
// iptables' tables at those hooks (mangle -150, dstnat -100, filter 0,
// srcnat 100); the order against other tables at the same priority is not
// defined and does not matter, since netman reads no mark another table
// sets at the same hook.
const (
	ChainForward          = "forward"
	ChainInput            = "input"
	ChainManglePrerouting = "mangle-prerouting"
	ChainNATPrerouting    = "nat-prerouting"
	ChainNATPostrouting   = "nat-postrouting"
)

// ChainC2C is the regular chain forward jumps to first: vxlan-policy-agent
// owns its rules (source marks and the policy lookup). The skeleton creates
// it empty so the jump is valid before the agent's first sync.
const ChainC2C = "c2c"

// Dispatch maps and sets, filled by cni-wrapper-plugin one container at a
// time, so a packet is sent to its container's chain by one lookup instead
// of walking a chain per container.
const (
	// MapInput: ip saddr → jump input--<handle> (container to host).
	MapInput = "input-dispatch"
	// MapNetOut: ip saddr . oifname → jump netout--<handle> (egress through
	// an underlay interface).
	MapNetOut = "netout-dispatch"
	// SetOverlayEgress: ip saddr . oifname of containers whose marked
	// (policy-tagged) packets may leave through the VTEP.
	SetOverlayEgress = "overlay-egress"
	// MapOverlay: ip daddr → jump overlay--<handle> (traffic to a container).
	MapOverlay = "overlay-dispatch"
	// MapMasquerade: ip saddr → jump masquerade--<handle> (nat postrouting).
	MapMasquerade = "masquerade-dispatch"
	// MapPortMappings: ip daddr . tcp dport → container ip . port (DNAT).
	MapPortMappings = "port-mappings"
	// MapIngressMarks: ip daddr . iifname . tcp dport → mark, the ingress
	// tag that lets port-mapped traffic through the overlay chain.
	MapIngressMarks = "ingress-marks"
)

// The IPv6 twins of the dispatch maps, keyed by a dual-stack container's
// IPv6 address (and the cell's IPv6 address for port mappings). They send
// its IPv6 packets to the same per-container chains as its IPv4 ones:
// those chains are inet chains and see both families. On an IPv4-only
// cell they stay empty.
const (
	MapInput6         = "input-dispatch6"
	MapNetOut6        = "netout-dispatch6"
	SetOverlayEgress6 = "overlay-egress6"
	MapOverlay6       = "overlay-dispatch6"
	MapMasquerade6    = "masquerade-dispatch6"
	MapPortMappings6  = "port-mappings6"
	MapIngressMarks6  = "ingress-marks6"
)

// Skeleton is the table, its base chains with their dispatch rules, the
// empty c2c chain and the dispatch maps. Every rule here is constant, so
// writing the skeleton is idempotent: AddSkeleton adds what is missing and
// rewrites the base chains' few rules in place.
func Skeleton() *Ruleset {
	base := func(name string, t knftables.BaseChainType, h knftables.BaseChainHook, p knftables.BaseChainPriority, rules ...string) *Chain {
		return &Chain{Name: name, Base: &BaseChain{Type: t, Hook: h, Priority: p}, Rules: rules}
	}
	return &Ruleset{
		Sets: []*Set{
			{Name: MapInput, Type: "ipv4_addr", Value: "verdict"},
			{Name: MapNetOut, Type: "ipv4_addr . ifname", Value: "verdict"},
			{Name: SetOverlayEgress, Type: "ipv4_addr . ifname"},
			{Name: MapOverlay, Type: "ipv4_addr", Value: "verdict"},
			{Name: MapMasquerade, Type: "ipv4_addr", Value: "verdict"},
			{Name: MapPortMappings, Type: "ipv4_addr . inet_service", Value: "ipv4_addr . inet_service"},
			{Name: MapIngressMarks, Type: "ipv4_addr . ifname . inet_service", Value: "mark"},
			{Name: MapInput6, Type: "ipv6_addr", Value: "verdict"},
			{Name: MapNetOut6, Type: "ipv6_addr . ifname", Value: "verdict"},
			{Name: SetOverlayEgress6, Type: "ipv6_addr . ifname"},
			{Name: MapOverlay6, Type: "ipv6_addr", Value: "verdict"},
			{Name: MapMasquerade6, Type: "ipv6_addr", Value: "verdict"},
			{Name: MapPortMappings6, Type: "ipv6_addr . inet_service", Value: "ipv6_addr . inet_service"},
			{Name: MapIngressMarks6, Type: "ipv6_addr . ifname . inet_service", Value: "mark"},
		},
		Chains: []*Chain{
			{Name: ChainC2C, Borrowed: true},
			base(ChainForward, knftables.FilterType, knftables.ForwardHook, knftables.FilterPriority,
				"jump "+ChainC2C,
				"ip saddr . oifname vmap @"+MapNetOut,
				"meta mark != 0x00000000 ip saddr . oifname @"+SetOverlayEgress+" accept",
				"ip daddr vmap @"+MapOverlay,
				"ip6 saddr . oifname vmap @"+MapNetOut6,
				"meta mark != 0x00000000 ip6 saddr . oifname @"+SetOverlayEgress6+" accept",
				"ip6 daddr vmap @"+MapOverlay6),
			base(ChainInput, knftables.FilterType, knftables.InputHook, knftables.FilterPriority,
				"ip saddr vmap @"+MapInput,
				"ip6 saddr vmap @"+MapInput6),
			base(ChainManglePrerouting, knftables.FilterType, knftables.PreroutingHook, knftables.ManglePriority,
				"meta mark set ip daddr . iifname . tcp dport map @"+MapIngressMarks,
				"meta mark set ip6 daddr . iifname . tcp dport map @"+MapIngressMarks6),
			base(ChainNATPrerouting, knftables.NATType, knftables.PreroutingHook, knftables.DNATPriority,
				"dnat ip to ip daddr . tcp dport map @"+MapPortMappings,
				"dnat ip6 to ip6 daddr . tcp dport map @"+MapPortMappings6),
			base(ChainNATPostrouting, knftables.NATType, knftables.PostroutingHook, knftables.SNATPriority,
				"ip saddr vmap @"+MapMasquerade,
				"ip6 saddr vmap @"+MapMasquerade6),
		},
	}
}

// AddSkeleton adds the skeleton to tx: the table, the maps and chains
// (created when absent, never emptied: their elements and the c2c chain's
// rules belong to their writers), and the base chains' rules, flushed and
// written again. That costs the same few operations whatever the table
// holds, and a packet sees the old base rules or the new ones, never none.
func AddSkeleton(tx *knftables.Transaction) {
	sk := Skeleton()
	tx.Add(&knftables.Table{})
	for _, s := range sk.Sets {
		s.add(tx)
	}
	for _, c := range sk.Chains {
		c.add(tx)
	}
	for _, c := range sk.Chains {
		if c.Base == nil {
			continue
		}
		tx.Flush(&knftables.Chain{Name: c.Name})
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
	}
}

// Delete adds the removal of the whole table to tx: what a cell switching
// back to the iptables backend runs (the table must exist: add it first to
// make the delete unconditional).
func Delete(tx *knftables.Transaction) {
	tx.Add(&knftables.Table{})
	tx.Delete(&knftables.Table{})
}
