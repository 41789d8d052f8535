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
	All  Protocol = "all"
)

// IPRange is an inclusive IPv4 range.
type IPRange struct{ Start, End netip.Addr }

// PortRange is an inclusive port range.
type PortRange struct{ Start, End uint16 }

// ICMPInfo is an ICMP type and code; type 255 means any type.
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
			if !n.Start.Is4() || !n.End.Is4() {
				warn(fmt.Sprintf("skipping non-IPv4 range %s-%s in %s rule", n.Start, n.End, r.Protocol))
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
	var d DenyNetworks
	for _, set := range []struct {
		in  []string
		out *[]netip.Prefix
	}{{always, &d.Always}, {running, &d.Running}, {staging, &d.Staging}} {
		for _, s := range set.in {
			p, err := netip.ParsePrefix(s)
			if err != nil || !p.Addr().Is4() {
				return DenyNetworks{}, fmt.Errorf("deny networks: invalid CIDR address: %s", s)
			}
			*set.out = append(*set.out, p.Masked())
		}
	}
	return d, nil
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
	return append(out, Reject())
}

// List is upstream's list L: converted egress rules, deny-network rejects
// for the workload, the optional connection rate limit, INVALID drop and
// RELATED,ESTABLISHED accept. Upstream inserts L at position 1 one rule at a
// time, so the live chain holds L reversed above Defaults.
func (c NetOutChain) List(rs []NetOutRule, warn func(string)) []iptables.Rule {
	out := ConvertNetOut(rs, c.LogChain(), c.ASGLogging, warn)
	for _, p := range c.Deny.Always {
		out = append(out, DestinationReject(p))
	}
	switch c.Workload {
	case "app", "task":
		for _, p := range c.Deny.Running {
			out = append(out, DestinationReject(p))
		}
	case "staging":
		for _, p := range c.Deny.Staging {
			out = append(out, DestinationReject(p))
		}
	}
	if c.Conn.Limit || c.Conn.DryRun {
		target := "REJECT"
		if c.Conn.Logging || c.Conn.DryRun {
			target = c.RateLimitLogChain()
		}
		out = append(out, ConnRateLimit(c.Conn.RatePerSec, c.Conn.Burst, c.Handle, c.expiryMS(), target))
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
		out = append(out, Reject())
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
