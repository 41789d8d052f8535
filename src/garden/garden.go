// Package garden holds Garden's network rule types (garden.NetOutRule and
// friends) with Garden's JSON encoding, shared by garden-external-networker,
// which receives them from Garden, and cni-wrapper-plugin, which reads them
// from runtimeConfig.netOutRules. It depends only on the standard library,
// so the CNI plugin links nothing of the networker.
package garden

import "net"

// NetOutRule is garden.NetOutRule, re-marshalled into the plugins'
// runtimeConfig.netOutRules exactly as Garden's types would.
// Protocol: 0 all, 1 tcp, 2 udp, 3 icmp, 4 icmpv6 (ProtocolICMPv6).
type NetOutRule struct {
	Protocol uint8        `json:"protocol,omitempty"`
	Networks []IPRange    `json:"networks,omitempty"`
	Ports    []PortRange  `json:"ports,omitempty"`
	ICMPs    *ICMPControl `json:"icmps,omitempty"`
	Log      bool         `json:"log,omitempty"`
}

// ProtocolICMPv6 is the protocol number of an icmpv6 rule: the value after
// garden's ProtocolICMP (3), as the dual-stack garden/executor ASG work
// ("icmpv6-support-asg") adds it.
const ProtocolICMPv6 = 4

// IPRange is garden.IPRange (inclusive).
type IPRange struct {
	Start net.IP `json:"start,omitempty"`
	End   net.IP `json:"end,omitempty"`
}

// PortRange is garden.PortRange (inclusive).
type PortRange struct {
	Start uint16 `json:"start,omitempty"`
	End   uint16 `json:"end,omitempty"`
}

// ICMPControl is garden.ICMPControl; Code is optional.
type ICMPControl struct {
	Type uint8  `json:"type,omitempty"`
	Code *uint8 `json:"code,omitempty"`
}
