// Package overlay6 is netman's IPv6 overlay address model. Dual-stack cells
// give every container an IPv6 address derived from its IPv4 overlay
// address: the deployment's IPv6 overlay network is one /96 and a
// container's IPv6 address is that /96 with the container's IPv4 address in
// its low 32 bits (10.255.7.12 → fd73:696c:6b::aff:70c). A cell's IPv6 prefix
// is therefore its IPv4 lease mapped the same way (10.255.7.0/24 → /120).
//
// Deriving instead of leasing means silk-controller, its schema and the
// lease wire format stay upstream's; every dual-stack cell knows every other
// cell's IPv6 prefix from the IPv4 leases it already polls, and any
// component that knows a container's IPv4 address and the network knows
// its IPv6 address.
package overlay6

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// DefaultNetwork is the IPv6 overlay used when ipv6.enable is on and no
// network is configured: a unique-local /96 ("fd" + "silk" in ASCII).
const DefaultNetwork = "fd73:696c:6b::/96"

// Bits is the prefix length every IPv6 overlay network has.
const Bits = 96

// Network is a deployment's IPv6 overlay network. The zero Network is
// disabled (IPv4 only).
type Network struct {
	prefix netip.Prefix
}

// Parse validates s: an IPv6 CIDR of exactly /96 with no host bits set.
// An empty s yields DefaultNetwork.
func Parse(s string) (Network, error) {
	if s == "" {
		s = DefaultNetwork
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() {
		return Network{}, fmt.Errorf("invalid ipv6 overlay network %q: want an IPv6 CIDR such as %s", s, DefaultNetwork)
	}
	if p.Bits() != Bits {
		return Network{}, fmt.Errorf("invalid ipv6 overlay network %q: must be a /%d (a container's IPv4 address fills the low 32 bits)", s, Bits)
	}
	if p.Masked() != p {
		return Network{}, fmt.Errorf("invalid ipv6 overlay network %q: host bits set (did you mean %s?)", s, p.Masked())
	}
	return Network{prefix: p}, nil
}

// MustParse is Parse for constants in tests and defaults.
func MustParse(s string) Network {
	n, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return n
}

// Enabled reports whether n is a network (not the zero Network).
func (n Network) Enabled() bool { return n.prefix.IsValid() }

// Prefix returns the /96.
func (n Network) Prefix() netip.Prefix { return n.prefix }

// String returns the CIDR, or "" for the zero Network.
func (n Network) String() string {
	if !n.Enabled() {
		return ""
	}
	return n.prefix.String()
}

// Addr maps an IPv4 overlay address to its IPv6 overlay address. It panics
// on a disabled network or a non-IPv4 address: callers check both at their
// edge.
func (n Network) Addr(v4 netip.Addr) netip.Addr {
	if !n.Enabled() {
		panic("overlay6: Addr on a disabled network")
	}
	v4 = v4.Unmap()
	if !v4.Is4() {
		panic(fmt.Sprintf("overlay6: Addr of non-IPv4 address %s", v4))
	}
	b := n.prefix.Addr().As16()
	a := v4.As4()
	copy(b[12:], a[:])
	return netip.AddrFrom16(b)
}

// Prefix6 maps an IPv4 overlay subnet (a cell's lease, or a /32 single-IP
// lease) to the cell's IPv6 prefix.
func (n Network) Prefix6(v4 netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(n.Addr(v4.Addr()), Bits+v4.Bits()).Masked()
}

// IPv4 maps an IPv6 overlay address back to its IPv4 address; ok is false
// when a is not inside the network.
func (n Network) IPv4(a netip.Addr) (v4 netip.Addr, ok bool) {
	if !n.Enabled() || !n.prefix.Contains(a) {
		return netip.Addr{}, false
	}
	b := a.As16()
	return netip.AddrFrom4([4]byte(b[12:])), true
}

// Contains reports whether a is an address of the network.
func (n Network) Contains(a netip.Addr) bool { return n.Enabled() && n.prefix.Contains(a) }

// Uint32 returns the low 32 bits of a as an integer (the embedded IPv4
// address), for planners that index containers by number.
func Uint32(a netip.Addr) uint32 {
	b := a.As16()
	return binary.BigEndian.Uint32(b[12:])
}

// ConfigKey is the config-file key, in every netman config that has one,
// whose non-empty value turns dual stack on (silk-daemon, cni-wrapper-plugin,
// vxlan-policy-agent, bosh-dns-adapter).
const ConfigKey = "ipv6_overlay_network"

// ParseConfig reads a config file's ipv6_overlay_network: "" is IPv4 only
// (the zero Network), anything else must Parse.
func ParseConfig(s string) (Network, error) {
	if s == "" {
		return Network{}, nil
	}
	return Parse(s)
}
