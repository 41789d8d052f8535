// Package rules renders upstream's iptables rules as text in iptables-save's
// canonical form: chain naming and log prefixes (28-character limit), the
// per-container rules of cni-wrapper-plugin, and the egress (ASG / garden
// netOut) conversion and ordering shared by cni-wrapper-plugin and
// vxlan-policy-agent. Everything here is pure; applying is src/iptables.
//
// Each constructor returns exactly what `iptables-save` prints back for the
// rule on both the nf_tables and legacy backends (a privileged test checks
// this), so desired rules can be compared with a State read from the kernel.
package rules

import (
	"fmt"
	"net/netip"
	"strconv"

	"github.com/netman-release/netman/src/iptables"
)

// MaxChainLen is the longest chain name upstream produces (the kernel allows
// 28 characters plus the terminating NUL).
const MaxChainLen = 28

// Prefix names a chain "<prefix>--<body>", cut to MaxChainLen characters.
func Prefix(prefix, body string) string {
	return truncate(prefix+"--"+body, MaxChainLen)
}

// Postfix names a chain "<body>--<suffix>", cutting body so the whole name
// fits MaxChainLen characters.
func Postfix(body, suffix string) string {
	keep := MaxChainLen - len("--"+suffix)
	if keep < 0 {
		keep = 0
	}
	return truncate(body, keep) + "--" + suffix
}

// LogPrefix renders a LOG prefix argument: the text cut to 28 characters,
// followed by a space, in double quotes.
func LogPrefix(text string) string {
	return `"` + truncate(text, 28) + ` "`
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Host renders a single address as iptables prints it: a /32, or a /128
// for an IPv6 address (ip6tables).
func Host(a netip.Addr) string { return a.String() + "/" + strconv.Itoa(a.BitLen()) }

// Mark renders a mark or tag given as hex digits ("ffff0000") as iptables
// prints it ("0xffff0000"). Invalid input is returned prefixed unchanged.
func Mark(hexTag string) string {
	v, err := strconv.ParseUint(hexTag, 16, 32)
	if err != nil {
		return "0x" + hexTag
	}
	return fmt.Sprintf("0x%x", v)
}

// Reject is the terminal rule of every netman chain.
func Reject() iptables.Rule {
	return "-j REJECT --reject-with icmp-port-unreachable"
}

// Reject6 is Reject as ip6tables prints it.
func Reject6() iptables.Rule {
	return "-j REJECT --reject-with icmp6-port-unreachable"
}

// RejectFor is Reject or Reject6 by family.
func RejectFor(f iptables.Family) iptables.Rule {
	if f == iptables.IPv6 {
		return Reject6()
	}
	return Reject()
}

// familyOf is the family whose tables hold a rule about address a.
func familyOf(a netip.Addr) iptables.Family {
	if a.Is6() && !a.Is4In6() {
		return iptables.IPv6
	}
	return iptables.IPv4
}

// NeighborDiscovery accepts the ICMPv6 neighbour discovery a dual-stack
// container exchanges with its gateway fe80::1 on the host veth (router
// solicitation, neighbour solicitation and advertisement): conntrack does
// not track them, so without these the input chain's reject would drop the
// container's answers and the host could not resolve its address.
func NeighborDiscovery() []iptables.Rule {
	return []iptables.Rule{
		"-p ipv6-icmp -m icmp6 --icmpv6-type 133 -j ACCEPT",
		"-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT",
		"-p ipv6-icmp -m icmp6 --icmpv6-type 136 -j ACCEPT",
	}
}

// Accept accepts everything.
func Accept() iptables.Rule { return "-j ACCEPT" }

// Jump jumps to chain unconditionally.
func Jump(chain string) iptables.Rule { return iptables.Rule("-j " + chain) }

// RelatedEstablished accepts packets of known connections.
func RelatedEstablished() iptables.Rule {
	return "-m state --state RELATED,ESTABLISHED -j ACCEPT"
}

// InvalidDrop drops TCP packets conntrack marks INVALID.
func InvalidDrop() iptables.Rule {
	return "-p tcp -m state --state INVALID -j DROP"
}

// DestinationReject rejects packets to a CIDR (deny networks).
func DestinationReject(cidr netip.Prefix) iptables.Rule {
	return iptables.Rule("-d " + cidr.String() + " " + string(RejectFor(familyOf(cidr.Addr()))))
}

// SourceJump jumps to chain for packets from ip (INPUT → input--H).
func SourceJump(ip netip.Addr, chain string) iptables.Rule {
	return iptables.Rule("-s " + Host(ip) + " -j " + chain)
}

// SourceOutJump jumps to chain for packets from ip leaving via ifname
// (FORWARD → netout--H, one per underlay interface).
func SourceOutJump(ip netip.Addr, ifname, chain string) iptables.Rule {
	return iptables.Rule("-s " + Host(ip) + " -o " + ifname + " -j " + chain)
}

// AllowDestinationPort accepts proto (tcp or udp) to ip:port (input--H host
// services and link-local DNS).
func AllowDestinationPort(proto string, ip netip.Addr, port int) iptables.Rule {
	return iptables.Rule(fmt.Sprintf("-d %s -p %s -m %s --dport %d -j ACCEPT", Host(ip), proto, proto, port))
}

// LimitedLog logs at most perSec packets a second (burst perSec) with prefix
// text, optionally only packets to dst (a zero Addr matches all).
func LimitedLog(dst netip.Addr, perSec int, text string) iptables.Rule {
	s := ""
	if dst.IsValid() {
		s = "-d " + Host(dst) + " "
	}
	return iptables.Rule(fmt.Sprintf("%s-m limit --limit %d/sec --limit-burst %d -j LOG --log-prefix %s", s, perSec, perSec, LogPrefix(text)))
}

// OverlayAllowEgress accepts marked (policy-tagged) packets from ip leaving
// through the VTEP.
func OverlayAllowEgress(vtep string, ip netip.Addr) iptables.Rule {
	return iptables.Rule("-s " + Host(ip) + " -o " + vtep + " -m mark ! --mark 0x0 -j ACCEPT")
}

// OverlayRelatedEstablished accepts packets of known connections to ip.
func OverlayRelatedEstablished(ip netip.Addr) iptables.Rule {
	return iptables.Rule("-d " + Host(ip) + " -m state --state RELATED,ESTABLISHED -j ACCEPT")
}

// OverlayTagAccept accepts packets to ip carrying mark tag (hex digits).
func OverlayTagAccept(ip netip.Addr, tag string) iptables.Rule {
	return iptables.Rule("-d " + Host(ip) + " -m mark --mark " + Mark(tag) + " -j ACCEPT")
}

// OverlayReject rejects everything else to ip.
func OverlayReject(ip netip.Addr) iptables.Rule {
	return iptables.Rule("-d " + Host(ip) + " " + string(RejectFor(familyOf(ip))))
}

// LogNonUDPNew logs the first packet of every non-UDP connection.
func LogNonUDPNew(text string) iptables.Rule {
	return iptables.Rule("! -p udp -m conntrack --ctstate INVALID,NEW,UNTRACKED -j LOG --log-prefix " + LogPrefix(text))
}

// LogUDPLimited logs UDP packets, at most perSec a second.
func LogUDPLimited(perSec int, text string) iptables.Rule {
	return iptables.Rule(fmt.Sprintf("-p udp -m limit --limit %d/sec --limit-burst %d -j LOG --log-prefix %s", perSec, perSec, LogPrefix(text)))
}

// PortForward DNATs tcp to hostIP:hostPort onto containerIP:containerPort
// (an IPv6 container address in brackets, as ip6tables prints it).
func PortForward(hostIP netip.Addr, hostPort int, containerIP netip.Addr, containerPort int) iptables.Rule {
	return iptables.Rule(fmt.Sprintf("-d %s -p tcp -m tcp --dport %d -j DNAT --to-destination %s",
		Host(hostIP), hostPort, netip.AddrPortFrom(containerIP, uint16(containerPort))))
}

// IngressMark marks tcp to hostIP:hostPort arriving on ifname with tag, so
// the container's overlay chain accepts it.
func IngressMark(hostIP netip.Addr, ifname string, hostPort int, tag string) iptables.Rule {
	return iptables.Rule(fmt.Sprintf("-d %s -i %s -p tcp -m tcp --dport %d -j MARK --set-xmark %s/0xffffffff",
		Host(hostIP), ifname, hostPort, Mark(tag)))
}

// Masquerade SNATs traffic from ip that leaves through anything but the VTEP,
// except to noMasquerade (skipped when invalid/zero).
func Masquerade(ip netip.Addr, noMasquerade netip.Prefix, vtep string) iptables.Rule {
	s := "-s " + Host(ip) + " "
	if noMasquerade.IsValid() {
		s += "! -d " + noMasquerade.String() + " "
	}
	return iptables.Rule(s + "! -o " + vtep + " -j MASQUERADE")
}

// ConnRateLimit matches new TCP connections above ratePerSec (per
// destination ip:port, burst burst) and sends them to target. A plain REJECT
// target is printed with its default reject-with, as iptables-save does.
func ConnRateLimit(ratePerSec, burst int, name string, expireMS int64, target string) iptables.Rule {
	return ConnRateLimitFamily(iptables.IPv4, ratePerSec, burst, name, expireMS, target)
}

// ConnRateLimitFamily is ConnRateLimit for family f's tables (a REJECT
// target rejects with the family's port unreachable).
func ConnRateLimitFamily(f iptables.Family, ratePerSec, burst int, name string, expireMS int64, target string) iptables.Rule {
	if target == "REJECT" {
		target = string(RejectFor(f))[len("-j "):]
	}
	return iptables.Rule(fmt.Sprintf("-p tcp -m conntrack --ctstate NEW -m hashlimit --hashlimit-above %d/sec --hashlimit-burst %d --hashlimit-mode dstip,dstport --hashlimit-name %s --hashlimit-htable-expire %d -j %s",
		ratePerSec, burst, name, expireMS, target))
}
