// Package observe is what netman shows about the network beyond upstream's
// interfaces: the wire form of vxlan-policy-agent's /c2c-enforced and
// /c2c-containers debug endpoints (read by `netman trace`), the policy
// graph with its DOT and SVG renderings (`netman graph`), and the
// read-only web page showing it (`netman ui`, policy-server's debug
// server).
package observe

import (
	"time"
)

// The agent's debug server paths.
const (
	PathEnforced   = "/c2c-enforced"
	PathContainers = "/c2c-containers"
)

// Enforced is what a cell's agent last enforced (GET /c2c-enforced).
type Enforced struct {
	// Backend is the enforcement_backend: iptables or nftables.
	Backend string `json:"backend"`
	// Chain holds the c2c rules: vpa--<timestamp> (iptables) or the
	// nftables chain.
	Chain string `json:"chain"`
	// LastCycle is when the last successful policy cycle finished (nil:
	// none yet); LastAttempt when the last cycle, good or failed, ran;
	// LastError the last cycle's error when it failed (the rules are then
	// those of LastCycle).
	LastCycle   *time.Time `json:"last_cycle"`
	LastAttempt *time.Time `json:"last_attempt"`
	LastError   string     `json:"last_error,omitempty"`
	// PoliciesLastUpdated is the policy server's policies_last_updated
	// the last successful cycle saw: a cycle after a policy change carries
	// a stamp at least as new as the change.
	PoliciesLastUpdated int64 `json:"policies_last_updated"`
	// PolicyDisabled is disable_container_network_policy: every overlay
	// connection is accepted, Sources and Destinations are empty.
	PolicyDisabled bool `json:"policy_disabled"`
	// IPv6OverlayNetwork is the cell's ipv6_overlay_network ("": IPv4
	// only): every rule below applies to the containers' IPv6 addresses
	// too.
	IPv6OverlayNetwork string `json:"ipv6_overlay_network,omitempty"`
	// Sources are the local containers whose packets are marked with
	// their app's tag; Destinations the local containers with the rules
	// accepting marked packets to them.
	Sources      []MarkedSource `json:"sources"`
	Destinations []Destination  `json:"destinations"`
}

// MarkedSource is a local container marked with its app's tag.
type MarkedSource struct {
	IP      string `json:"ip"`
	AppGUID string `json:"app_guid"`
	Tag     string `json:"tag"`
}

// Destination is a local destination container and its allow rules.
type Destination struct {
	IP      string      `json:"ip"`
	AppGUID string      `json:"app_guid"`
	Rules   []AllowRule `json:"rules"`
}

// AllowRule accepts packets marked with SourceTag to Protocol ports
// StartPort-EndPort.
type AllowRule struct {
	SourceAppGUID string `json:"source_app_guid"`
	SourceTag     string `json:"source_tag"`
	Protocol      string `json:"protocol"`
	StartPort     int    `json:"start_port"`
	EndPort       int    `json:"end_port"`
}

// Allows returns the rule accepting packets tagged srcTag to ip's
// protocol port, and whether there is one.
func (e *Enforced) Allows(ip, srcTag, protocol string, port int) (AllowRule, bool) {
	for _, d := range e.Destinations {
		if d.IP != ip {
			continue
		}
		for _, r := range d.Rules {
			if r.SourceTag == srcTag && r.Protocol == protocol && r.StartPort <= port && port <= r.EndPort {
				return r, true
			}
		}
	}
	return AllowRule{}, false
}

// Marks returns the tag packets from ip are marked with ("": none).
func (e *Enforced) Marks(ip string) string {
	for _, s := range e.Sources {
		if s.IP == ip {
			return s.Tag
		}
	}
	return ""
}

// Containers are a cell's containers (GET /c2c-containers).
type Containers struct {
	// UnderlayIPs are the cell's underlay_ips.
	UnderlayIPs []string    `json:"underlay_ips"`
	Containers  []Container `json:"containers"`
}

// Container is one container of the metadata store. Tag is its app's tag
// when the last enforced policies name the app ("" otherwise: the agent
// learns tags only from policies).
type Container struct {
	Handle    string `json:"handle"`
	IP        string `json:"ip"`
	AppGUID   string `json:"app_guid"`
	SpaceGUID string `json:"space_guid,omitempty"`
	OrgGUID   string `json:"org_guid,omitempty"`
	AppName   string `json:"app_name,omitempty"`
	Ports     string `json:"ports,omitempty"`
	Workload  string `json:"workload,omitempty"`
	Tag       string `json:"tag,omitempty"`
	// IPv6 is the container's IPv6 overlay address on a dual-stack cell
	// (ipv6_overlay_network), where the same policies apply.
	IPv6 string `json:"ipv6,omitempty"`
}

// Addrs is the container's addresses as a trace shows them: the IPv4
// one, and the IPv6 one in parentheses on a dual-stack cell.
func (c Container) Addrs() string {
	if c.IPv6 == "" {
		return c.IP
	}
	return c.IP + " (" + c.IPv6 + ")"
}
