package asg

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
)

// ParseRules decodes a security group's rules string (a JSON array). An
// empty string or JSON null is no rules.
func ParseRules(s string) ([]policy.SecurityGroupRule, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var rs []policy.SecurityGroupRule
	if err := json.Unmarshal([]byte(s), &rs); err != nil {
		return nil, fmt.Errorf("parsing security group rules: %w", err)
	}
	return rs, nil
}

// ErrIPRangeConversionFailed is upstream's error for a destination entry
// that is not an IPv4 address, CIDR or a-b range.
var ErrIPRangeConversionFailed = errors.New("failed to convert destination to ip range")

// Convert turns security group rules into egress rules. Any destination
// entry that does not parse fails the whole list (upstream then skips the
// container). Rules upstream's converter drops (tcp or udp without ports,
// icmp or all with ports) are dropped and reported through warn, and so
// are rules with a protocol other than tcp, udp, icmp or all (upstream
// drops those silently; rules.ConvertNetOut would treat them as all).
func Convert(rs []policy.SecurityGroupRule, warn func(string)) ([]rules.NetOutRule, error) {
	out := make([]rules.NetOutRule, 0, len(rs))
	for _, r := range rs {
		nets, err := ParseDestination(r.Destination)
		if err != nil {
			return nil, fmt.Errorf("%w: %q", err, r.Destination)
		}
		proto := rules.Protocol(r.Protocol)
		switch proto {
		case rules.TCP, rules.UDP, rules.ICMP, rules.ICMPv6, rules.All:
		default:
			if warn != nil {
				warn(fmt.Sprintf("unsupported protocol %q in security group rule for %s", r.Protocol, r.Destination))
			}
			continue
		}
		nr := rules.NetOutRule{Protocol: proto, Networks: nets, Ports: ParsePorts(r.Ports), Log: r.Log}
		// Upstream's converter drops these rules with a message; check
		// here so the message shows the security group rule.
		msg := ""
		switch {
		case (proto == rules.TCP || proto == rules.UDP) && len(nr.Ports) == 0:
			msg = "UDP/TCP rule must specify ports"
		case proto == rules.ICMP && len(nr.Ports) > 0:
			msg = "ICMP rule must not specify ports"
		case proto == rules.ICMPv6 && len(nr.Ports) > 0:
			msg = "ICMPv6 rule must not specify ports"
		case proto == rules.All && len(nr.Ports) > 0:
			msg = "Rule for all protocols (TCP/UDP/ICMP) must not specify ports"
		}
		if msg != "" {
			if warn != nil {
				warn(fmt.Sprintf("%s: %+v", msg, r))
			}
			continue
		}
		if proto == rules.ICMP || proto == rules.ICMPv6 {
			// Upstream casts type and code to garden's uint8 types, so -1
			// (any) becomes 255, which iptables prints as "any".
			nr.ICMP = &rules.ICMPInfo{Type: uint8(r.Type), Code: uint8(r.Code)}
		}
		out = append(out, nr)
	}
	return out, nil
}

// ParseDestination parses a comma-separated list of IPv4 addresses, CIDRs
// and a-b ranges, as upstream: leading zeros in octets are dropped, a CIDR
// stands for its whole network. Spaces around entries and around "-" and
// "/" are ignored (upstream rejects them, skipping the container). IPv6
// addresses, CIDRs and ranges (Cloud Controller accepts them since
// dual-stack ASGs) parse too, on every cell: an IPv4-only cell then skips
// those ranges with a warning instead of skipping the container; a range
// with one end of each family is an error.
func ParseDestination(s string) ([]rules.IPRange, error) {
	var out []rules.IPRange
	for _, d := range strings.Split(s, ",") {
		r, err := parseRange(strings.TrimSpace(d))
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parseRange(d string) (rules.IPRange, error) {
	if strings.Contains(d, ":") {
		return parseRange6(d)
	}
	i := strings.IndexAny(d, "-/")
	switch {
	case i < 0:
		a, ok := parseIPv4(d)
		if !ok {
			return rules.IPRange{}, ErrIPRangeConversionFailed
		}
		return rules.IPRange{Start: a, End: a}, nil
	case d[i] == '/':
		a, ok := parseIPv4(strings.TrimSpace(d[:i]))
		bits, okBits := parseUint(strings.TrimSpace(d[i+1:]), 32)
		if !ok || !okBits {
			return rules.IPRange{}, ErrIPRangeConversionFailed
		}
		p := netip.PrefixFrom(a, bits).Masked()
		return rules.IPRange{Start: p.Addr(), End: lastAddr(p)}, nil
	default:
		a, okA := parseIPv4(strings.TrimSpace(d[:i]))
		b, okB := parseIPv4(strings.TrimSpace(d[i+1:]))
		if !okA || !okB {
			return rules.IPRange{}, ErrIPRangeConversionFailed
		}
		// A reversed range is kept: iptables accepts it (it never matches).
		return rules.IPRange{Start: a, End: b}, nil
	}
}

// parseRange6 parses an IPv6 address, CIDR or a-b range.
func parseRange6(d string) (rules.IPRange, error) {
	addr := func(s string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		return a, err == nil && a.Is6() && !a.Is4In6() && a.Zone() == ""
	}
	if a, b, ok := strings.Cut(d, "-"); ok {
		x, okA := addr(a)
		y, okB := addr(b)
		if !okA || !okB {
			return rules.IPRange{}, ErrIPRangeConversionFailed
		}
		return rules.IPRange{Start: x, End: y}, nil
	}
	if a, bits, ok := strings.Cut(d, "/"); ok {
		x, okA := addr(a)
		n, okBits := parseUint(strings.TrimSpace(bits), 128)
		if !okA || !okBits {
			return rules.IPRange{}, ErrIPRangeConversionFailed
		}
		p := netip.PrefixFrom(x, n).Masked()
		return rules.IPRange{Start: p.Addr(), End: lastAddr6(p)}, nil
	}
	x, ok := addr(d)
	if !ok {
		return rules.IPRange{}, ErrIPRangeConversionFailed
	}
	return rules.IPRange{Start: x, End: x}, nil
}

// lastAddr6 is the last address of an IPv6 prefix.
func lastAddr6(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(b)
}

// parseIPv4 accepts dotted-quad IPv4 with leading zeros in octets.
func parseIPv4(s string) (netip.Addr, bool) {
	var b [4]byte
	parts := strings.Split(s, ".")
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	for i, p := range parts {
		v, ok := parseUint(p, 255)
		if !ok {
			return netip.Addr{}, false
		}
		b[i] = byte(v)
	}
	return netip.AddrFrom4(b), true
}

// parseUint parses decimal digits only (leading zeros allowed) up to max.
func parseUint(s string, max int) (int, bool) {
	if s == "" || len(s) > 10 {
		return 0, false
	}
	v := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, v <= max
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	if p.Bits() == 0 {
		host = ^uint32(0)
	}
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ParsePorts parses a comma-separated list of ports and a-b port ranges.
// Items that do not parse are dropped, as upstream; spaces around items and
// numbers are ignored (cf-networking-release#149: "80, 443"). Unlike
// upstream, ports above 65535 are dropped instead of wrapping around, and
// reversed ranges are dropped instead of failing the whole iptables write.
func ParsePorts(s string) []rules.PortRange {
	var out []rules.PortRange
	for _, item := range strings.Split(s, ",") {
		parts := strings.Split(item, "-")
		switch len(parts) {
		case 1:
			p, err := strconv.Atoi(strings.TrimSpace(parts[0]))
			if err != nil || p < 0 || p > 65535 {
				continue
			}
			out = append(out, rules.PortRange{Start: uint16(p), End: uint16(p)})
		case 2:
			a, errA := strconv.Atoi(strings.TrimSpace(parts[0]))
			b, errB := strconv.Atoi(strings.TrimSpace(parts[1]))
			if errA != nil || errB != nil || a < 0 || b > 65535 || a > b {
				continue
			}
			out = append(out, rules.PortRange{Start: uint16(a), End: uint16(b)})
		}
	}
	return out
}
