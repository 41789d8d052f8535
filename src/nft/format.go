package nft

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/iptables/rules"
)

// Values in the canonical text `nft list` prints, so that what a planner
// writes and what State reads back compare as strings. State turns nft's
// numeric JSON back into these same forms (state.go).

// Mark renders a packet mark as nft lists it ("0x00000003").
func Mark(v uint32) string { return fmt.Sprintf("0x%08x", v) }

// ParseTag parses a policy tag or ingress tag given as hex digits
// ("0003", "FFFF", "ffff0000"), as upstream's MARK --set-xmark takes it.
func ParseTag(hex string) (uint32, error) {
	v, err := strconv.ParseUint(hex, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("nft: tag %q is not up to 8 hex digits", hex)
	}
	return uint32(v), nil
}

// Proto renders an IP protocol number by the name nft lists it with (tcp,
// udp, icmp), or as a number.
func Proto(p uint8) string {
	switch p {
	case 1:
		return "icmp"
	case 6:
		return "tcp"
	case 17:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// ProtoNumber is the protocol number of "tcp", "udp" or "icmp".
func ProtoNumber(name string) (uint8, bool) {
	switch name {
	case "icmp":
		return 1, true
	case "tcp":
		return 6, true
	case "udp":
		return 17, true
	}
	return 0, false
}

// Addr renders an address (IPv4 or IPv6).
func Addr(a netip.Addr) string { return a.String() }

// AddrRange renders an inclusive IPv4 (or IPv6) range as nft lists it: one address
// alone, a prefix when the range is exactly one, else "first-last".
func AddrRange(lo, hi netip.Addr) string {
	if lo.Is6() && !lo.Is4In6() {
		return addrRange6(lo, hi)
	}
	return addrRange(u32(lo), u32(hi))
}

func addrRange(lo, hi uint32) string {
	if lo == hi {
		return a4(lo).String()
	}
	size := uint64(hi) - uint64(lo) + 1
	if size&(size-1) == 0 && uint64(lo)%size == 0 {
		bits := 32
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		return a4(lo).String() + "/" + strconv.Itoa(bits)
	}
	return a4(lo).String() + "-" + a4(hi).String()
}

// Prefix renders a CIDR as nft lists it (a /32 or an IPv6 /128 as the
// address alone).
func Prefix(p netip.Prefix) string {
	p = p.Masked()
	if p.Bits() == p.Addr().BitLen() {
		return p.Addr().String()
	}
	return p.String()
}

// Range renders an inclusive range of ports, ICMP types or codes: one
// value alone, else "lo-hi".
func Range(lo, hi uint32) string {
	if lo == hi {
		return strconv.FormatUint(uint64(lo), 10)
	}
	return strconv.FormatUint(uint64(lo), 10) + "-" + strconv.FormatUint(uint64(hi), 10)
}

// Quote renders a string value (an interface name) as nft lists it.
func Quote(s string) string { return strconv.Quote(s) }

// Key joins the fields of a concatenated key or value.
func Key(fields ...string) string { return strings.Join(fields, " . ") }

// Jump and Goto render verdicts for verdict-map elements.
func Jump(chain string) string { return "jump " + chain }

// Goto renders a goto verdict.
func Goto(chain string) string { return "goto " + chain }

// LogPrefix renders a log prefix exactly as netman's iptables rules write
// it (text cut to 28 characters, then a space), so the kernel log lines
// iptables-logger parses are the same in both modes.
func LogPrefix(text string) string { return rules.LogPrefix(text) }

// Reject is the rule (or rule tail) iptables' REJECT --reject-with
// icmp-port-unreachable becomes. nft lists a reject after an IPv4 match
// with the explicit ICMP type, and a bare one without it; both send the
// same ICMP port unreachable to an IPv4 packet.
const (
	Reject     = "reject"
	RejectIPv4 = "reject with icmp port-unreachable"
)

// NeighborDiscovery accepts the ICMPv6 neighbour discovery a dual-stack
// container exchanges with its gateway (router solicitation, neighbour
// solicitation and advertisement), which conntrack does not track: one
// rule per type rather than an anonymous set, so the netlink fast path
// writes them.
var NeighborDiscovery = []string{
	"icmpv6 type nd-router-solicit accept",
	"icmpv6 type nd-neighbor-solicit accept",
	"icmpv6 type nd-neighbor-advert accept",
}

// name rules: nft identifiers start with a letter and continue with
// letters, digits, '-', '_', '.' or '/'. Container handles are Diego GUIDs
// (and "check-" health-check handles), so they fit after a prefix.
var nameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,250}$`)

// ValidName reports whether name can be used as a chain or set name
// unquoted (what knftables writes).
func ValidName(name string) error {
	if !nameRe.MatchString(name) {
		return fmt.Errorf("nft: %q is not usable as a chain or set name", name)
	}
	return nil
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func a4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
