package rules

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/netman-release/netman/src/iptables"
)

// Protocol of an egress rule.
type Protocol string

// Egress rule protocols.
const (
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
	ICMP Protocol = "icmp"
	// ICMPv6 matches IPv6 destinations only (the BBS/CC "icmpv6" shape);
	// ICMP matches IPv4 destinations only.
	ICMPv6 Protocol = "icmpv6"
	All    Protocol = "all"
)

// IPRange is an inclusive range of IPv4 or of IPv6 addresses.
type IPRange struct{ Start, End netip.Addr }

// PortRange is an inclusive port range.
type PortRange struct{ Start, End uint16 }

// ICMPInfo is an ICMP (or ICMPv6) type and code; type 255 means any type.
type ICMPInfo struct{ Type, Code uint8 }

// NetOutRule is one egress allow rule, from a garden netOut rule (wrapper,
// when dynamic ASGs are off) or a security group rule (policy agent).
type NetOutRule struct {
	Protocol Protocol
	Networks []IPRange
	Ports    []PortRange
	ICMP     *ICMPInfo
	Log      bool
}

// ConvertNetOut turns egress rules into iptables rules, one per network
// (and per port range for tcp/udp), as upstream: accepted traffic jumps to
// ACCEPT, or goes to logChain when the rule or globalLogging asks for a log.
// Rules upstream rejects (tcp/udp without ports, icmp without type/code or
// with ports, all with ports) are skipped and reported through warn, as are
// non-IPv4 ranges. Exact duplicates are dropped, the first kept.
func ConvertNetOut(rs []NetOutRule, logChain string, globalLogging bool, warn func(string)) []iptables.Rule {
	return ConvertNetOutFamily(rs, iptables.IPv4, false, logChain, globalLogging, warn)
}

// ConvertNetOutFamily is ConvertNetOut for one family's tables: it keeps
// only the ranges of family f, and only the protocols that can match it
// (icmp rules never match IPv6, icmpv6 rules never match IPv4; tcp, udp and
// all follow the destination). dualStack says the other family's ranges
// are converted for the other family's tables, so they are skipped
// silently; else (an IPv4-only cell) non-IPv4 ranges are reported as
// ConvertNetOut does. A range mixing families is always reported.
func ConvertNetOutFamily(rs []NetOutRule, f iptables.Family, dualStack bool, logChain string, globalLogging bool, warn func(string)) []iptables.Rule {
	if warn == nil {
		warn = func(string) {}
	}
	var out []iptables.Rule
	seen := map[iptables.Rule]bool{}
	add := func(r iptables.Rule) {
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	for _, r := range rs {
		target := "-j ACCEPT"
		if r.Log || globalLogging {
			target = "-g " + logChain
		}
		for _, n := range r.Networks {
			fam, ok := n.Family()
			switch {
			case !ok && dualStack:
				warn(fmt.Sprintf("skipping range %s-%s mixing IPv4 and IPv6 in %s rule", n.Start, n.End, r.Protocol))
				continue
			case fam != f || !ok:
				if !dualStack && f == iptables.IPv4 {
					warn(fmt.Sprintf("skipping non-IPv4 range %s-%s in %s rule", n.Start, n.End, r.Protocol))
				}
				continue
			case r.Protocol == ICMP && f == iptables.IPv6, r.Protocol == ICMPv6 && f == iptables.IPv4:
				continue
			}
			dst := "-m iprange --dst-range " + n.Start.String() + "-" + n.End.String()
			switch r.Protocol {
			case TCP, UDP:
				if len(r.Ports) == 0 {
					warn(fmt.Sprintf("UDP/TCP rule must specify ports: %+v", r))
					continue
				}
				for _, p := range r.Ports {
					add(iptables.Rule("-p " + string(r.Protocol) + " " + dst + " -m " + string(r.Protocol) +
						" --dport " + portSpec(p) + " " + target))
				}
			case ICMP:
				if r.ICMP == nil {
					warn(fmt.Sprintf("ICMP rule must specify ICMP type/code: %+v", r))
					continue
				}
				if len(r.Ports) > 0 {
					warn(fmt.Sprintf("ICMP rule must not specify ports: %+v", r))
					continue
				}
				add(iptables.Rule("-p icmp " + dst + " -m icmp --icmp-type " + icmpSpec(*r.ICMP) + " " + target))
			case ICMPv6:
				if r.ICMP == nil {
					warn(fmt.Sprintf("ICMPv6 rule must specify ICMP type/code: %+v", r))
					continue
				}
				if len(r.Ports) > 0 {
					warn(fmt.Sprintf("ICMPv6 rule must not specify ports: %+v", r))
					continue
				}
				if r.ICMP.Type == 255 {
					// ip6tables' icmp6 match has no "any" type: leave it out.
					add(iptables.Rule("-p ipv6-icmp " + dst + " " + target))
					continue
				}
				add(iptables.Rule("-p ipv6-icmp " + dst + " -m icmp6 --icmpv6-type " + fmt.Sprintf("%d/%d", r.ICMP.Type, r.ICMP.Code) + " " + target))
			default:
				if len(r.Ports) > 0 {
					warn(fmt.Sprintf("Rule for all protocols (TCP/UDP/ICMP) must not specify ports: %+v", r))
					continue
				}
				add(iptables.Rule(dst + " " + target))
			}
		}
	}
	return out
}

// Family is the address family of the range; ok is false when its ends are
// of different families (or invalid).
func (n IPRange) Family() (f iptables.Family, ok bool) {
	switch {
	case n.Start.Is4() && n.End.Is4():
		return iptables.IPv4, true
	case n.Start.Is6() && n.End.Is6() && !n.Start.Is4In6() && !n.End.Is4In6():
		return iptables.IPv6, true
	}
	return iptables.IPv4, false
}

// portSpec prints a port range as iptables does: one port alone.
func portSpec(p PortRange) string {
	if p.Start == p.End {
		return strconv.Itoa(int(p.Start))
	}
	return strconv.Itoa(int(p.Start)) + ":" + strconv.Itoa(int(p.End))
}

// icmpSpec prints type/code as iptables does. Type 255 matches every type
// whatever the code (the kernel ignores it), and iptables prints it "any";
// rendering "any" keeps what we write and what we read back identical,
// which upstream's "255/255" did not (its rules could not be deleted by spec).
func icmpSpec(i ICMPInfo) string {
	if i.Type == 255 {
		return "any"
	}
	return fmt.Sprintf("%d/%d", i.Type, i.Code)
}

// DenyNetworks are operator CIDRs egress may never reach, by workload.
type DenyNetworks struct {
	Always, Running, Staging []netip.Prefix
}

// ParseDenyNetworks canonicalises CIDRs ("10.0.0.1/8" → "10.0.0.0/8").
func ParseDenyNetworks(always, running, staging []string) (DenyNetworks, error) {
	return ParseDenyNetworksDual(always, running, staging, false)
}

// ParseDenyNetworksDual is ParseDenyNetworks that, on a dual-stack cell
// (ipv6 true), also accepts IPv6 CIDRs.
func ParseDenyNetworksDual(always, running, staging []string, ipv6 bool) (DenyNetworks, error) {
	var d DenyNetworks
	for _, set := range []struct {
		in  []string
		out *[]netip.Prefix
	}{{always, &d.Always}, {running, &d.Running}, {staging, &d.Staging}} {
		for _, s := range set.in {
			p, err := netip.ParsePrefix(s)
			if err != nil || !(p.Addr().Is4() || ipv6 && p.Addr().Is6() && !p.Addr().Is4In6()) {
				return DenyNetworks{}, fmt.Errorf("deny networks: invalid CIDR address: %s", s)
			}
			*set.out = append(*set.out, p.Masked())
		}
	}
	return d, nil
}

// Family keeps the networks of family f.
func (d DenyNetworks) Family(f iptables.Family) DenyNetworks {
	keep := func(in []netip.Prefix) []netip.Prefix {
		var out []netip.Prefix
		for _, p := range in {
			if familyOf(p.Addr()) == f {
				out = append(out, p)
			}
		}
		return out
	}
	return DenyNetworks{Always: keep(d.Always), Running: keep(d.Running), Staging: keep(d.Staging)}
}

// OutConn is the outbound connection rate limit (outbound_connections).
type OutConn struct {
	Limit, Logging, DryRun bool
	Burst, RatePerSec      int
}

// RateLimitLogChainNeeded reports whether netout--H--rl-log exists.
func (c OutConn) RateLimitLogChainNeeded() bool {
	return (c.Limit && c.Logging) || c.DryRun
}

// NetOutChain describes the egress chain of one container.
type NetOutChain struct {
	Handle   string
	Workload string // container_workload metadata: app, task, staging
	Deny     DenyNetworks
	Conn     OutConn
	// ASGLogging sends every accepted rule through the log chain and logs
	// default denies.
	ASGLogging       bool
	DeniedLogsPerSec int
	// Family is the tables the chain lives in: IPv4 (iptables) or IPv6
	// (ip6tables: IPv6 destinations, icmpv6, icmp6 rejects). DualStack
	// says the cell has both, so the IPv4 chain skips IPv6 destinations
	// without a warning.
	Family    iptables.Family
	DualStack bool
}

// Name is netout--<handle>.
func (c NetOutChain) Name() string { return Prefix("netout", c.Handle) }

// LogChain is the accepted-traffic log chain, netout--<handle>--log.
func (c NetOutChain) LogChain() string { return Postfix(c.Name(), "log") }

// RateLimitLogChain is netout--<handle>--rl-log.
func (c NetOutChain) RateLimitLogChain() string { return Postfix(c.Name(), "rl-log") }

// Defaults are the rules at the bottom of the chain: the optional DENY_ log
// and the final REJECT.
func (c NetOutChain) Defaults() []iptables.Rule {
	var out []iptables.Rule
	if c.ASGLogging {
		out = append(out, LimitedLog(netip.Addr{}, c.DeniedLogsPerSec, "DENY_"+c.Handle))
	}
	return append(out, RejectFor(c.Family))
}

// List is upstream's list L: converted egress rules, deny-network rejects
// for the workload, the optional connection rate limit, INVALID drop and
// RELATED,ESTABLISHED accept. Upstream inserts L at position 1 one rule at a
// time, so the live chain holds L reversed above Defaults.
func (c NetOutChain) List(rs []NetOutRule, warn func(string)) []iptables.Rule {
	out := ConvertNetOutFamily(rs, c.Family, c.DualStack, c.LogChain(), c.ASGLogging, warn)
	deny := c.Deny.Family(c.Family)
	for _, p := range deny.Always {
		out = append(out, DestinationReject(p))
	}
	switch c.Workload {
	case "app", "task":
		for _, p := range deny.Running {
			out = append(out, DestinationReject(p))
		}
	case "staging":
		for _, p := range deny.Staging {
			out = append(out, DestinationReject(p))
		}
	}
	if c.Conn.Limit || c.Conn.DryRun {
		target := "REJECT"
		if c.Conn.Logging || c.Conn.DryRun {
			target = c.RateLimitLogChain()
		}
		out = append(out, ConnRateLimitFamily(c.Family, c.Conn.RatePerSec, c.Conn.Burst, c.Handle, c.expiryMS(), target))
	}
	return append(out, InvalidDrop(), RelatedEstablished())
}

// Rules is the whole chain top to bottom: List reversed, then Defaults.
func (c NetOutChain) Rules(rs []NetOutRule, warn func(string)) []iptables.Rule {
	l := c.List(rs, warn)
	out := make([]iptables.Rule, 0, len(l)+2)
	for i := len(l) - 1; i >= 0; i-- {
		out = append(out, l[i])
	}
	return append(out, c.Defaults()...)
}

// RateLimitLogRules fill netout--H--rl-log: log when logging or dry-run,
// reject unless dry-run.
func (c NetOutChain) RateLimitLogRules() []iptables.Rule {
	var out []iptables.Rule
	if c.Conn.Logging || c.Conn.DryRun {
		out = append(out, LimitedLog(netip.Addr{}, c.DeniedLogsPerSec, "DENY_ORL_"+c.Handle))
	}
	if !c.Conn.DryRun {
		out = append(out, RejectFor(c.Family))
	}
	return out
}

// expiryMS is ceil(burst/rate) seconds in milliseconds.
func (c NetOutChain) expiryMS() int64 {
	if c.Conn.RatePerSec <= 0 {
		return 0
	}
	secs := (int64(c.Conn.Burst) + int64(c.Conn.RatePerSec) - 1) / int64(c.Conn.RatePerSec)
	return secs * 1000
}

// String prints the rule for warnings, with the ICMP type and code rather
// than the pointer.
func (r NetOutRule) String() string {
	icmp := "<nil>"
	if r.ICMP != nil {
		icmp = fmt.Sprintf("%d/%d", r.ICMP.Type, r.ICMP.Code)
	}
	return fmt.Sprintf("{Protocol:%s Networks:%+v Ports:%+v ICMP:%s Log:%t}", r.Protocol, r.Networks, r.Ports, icmp, r.Log)
}
