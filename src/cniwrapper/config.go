// Package cniwrapper is cni-wrapper-plugin: the top plugin of the garden CNI
// conflist. It delegates address assignment to silk-cni, records the
// container in the container metadata store, asks the policy agent to poll,
// and installs the container's iptables chains (host services, egress/ASG,
// overlay isolation, port mappings, masquerade); DEL removes exactly those.
// With enforcement_backend: nftables the same rules go into netman's nftables
// table instead (nft.go).
//
// Planning (config → rules) is pure and lives in plan.go and nft.go;
// plugin.go runs the ADD and DEL sequences against small interfaces for the
// delegate, the metadata store, the policy agent and iptables or nftables.
package cniwrapper

import (
	"encoding/json"
	"fmt"
	"github.com/netman-release/netman/src/garden"
	"net/netip"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Config is the plugin's stdin: its conflist entry plus the keys the runtime
// (garden-external-networker via libcni) injects. Keys as upstream.
type Config struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Type       string `json:"type"`

	Datastore             string         `json:"datastore"`
	DatastoreFileOwner    string         `json:"datastore_file_owner"`
	DatastoreFileGroup    string         `json:"datastore_file_group"`
	IPTablesLockFile      string         `json:"iptables_lock_file"`
	Delegate              map[string]any `json:"delegate"`
	InstanceAddress       string         `json:"instance_address"`
	NoMasqueradeCIDRRange string         `json:"no_masquerade_cidr_range"`
	DNSServers            []string       `json:"dns_servers"`
	HostTCPServices       []string       `json:"host_tcp_services"`
	HostUDPServices       []string       `json:"host_udp_services"`
	// HostTCPServicesIPv6 is upstream's host_tcp_services_ipv6
	// ("[address]:port"): host services a dual-stack container may reach
	// over IPv6.
	HostTCPServicesIPv6             []string     `json:"host_tcp_services_ipv6"`
	DenyNetworks                    DenyNetworks `json:"deny_networks"`
	UnderlayIPs                     []string     `json:"underlay_ips"`
	TemporaryUnderlayInterfaceNames []string     `json:"temporary_underlay_interface_names"`
	IPTablesASGLogging              bool         `json:"iptables_asg_logging"`
	IPTablesC2CLogging              bool         `json:"iptables_c2c_logging"`
	IPTablesDeniedLogsPerSec        int          `json:"iptables_denied_logs_per_sec"`
	IPTablesAcceptedUDPLogsPerSec   int          `json:"iptables_accepted_udp_logs_per_sec"`
	IngressTag                      string       `json:"ingress_tag"`
	VTEPName                        string       `json:"vtep_name"`
	PolicyAgentForcePollAddress     string       `json:"policy_agent_force_poll_address"`
	OutConn                         OutConn      `json:"outbound_connections"`

	// IPTablesFlavor is a netman extension: "" (the host's iptables*
	// binaries), "nft" or "legacy". Every netman writer on a cell must use
	// the same backend.
	IPTablesFlavor string `json:"iptables_flavor,omitempty"`

	// EnforcementBackend is a netman extension: "iptables" (the default:
	// upstream's chains) or "nftables" (netman's inet netman table, see
	// docs/nftables.md). Every netman writer on a cell must use the same.
	EnforcementBackend string `json:"enforcement_backend,omitempty"`

	// IPv6OverlayNetwork is a netman extension (package overlay6): when
	// set the container is dual-stack and every rule the wrapper writes
	// for it has its IPv6 counterpart.
	IPv6OverlayNetwork string `json:"ipv6_overlay_network,omitempty"`
	// InstanceAddressIPv6 is a netman extension: the cell's IPv6 address,
	// the destination of the IPv6 twins of port mappings. Empty: port
	// mappings are IPv4 only.
	InstanceAddressIPv6 string `json:"instance_address_ipv6,omitempty"`

	RuntimeConfig RuntimeConfig  `json:"runtimeConfig"`
	Metadata      map[string]any `json:"metadata"`
}

// DenyNetworks is deny_networks.
type DenyNetworks struct {
	Always  []string `json:"always"`
	Running []string `json:"running"`
	Staging []string `json:"staging"`
}

// OutConn is outbound_connections.
type OutConn struct {
	Limit      bool `json:"limit"`
	Logging    bool `json:"logging"`
	Burst      int  `json:"burst"`
	RatePerSec int  `json:"rate_per_sec"`
	DryRun     bool `json:"dry_run"`
}

// RuntimeConfig is what garden passes per container.
type RuntimeConfig struct {
	PortMappings []PortMapping `json:"portMappings"`
	NetOutRules  []NetOutRule  `json:"netOutRules"`
}

// PortMapping is a garden NetIn.
type PortMapping struct {
	HostPort      int `json:"host_port"`
	ContainerPort int `json:"container_port"`
}

// Garden's netOut types, as garden-external-networker passes them in
// runtimeConfig.netOutRules (Protocol: 0 all, 1 tcp, 2 udp, 3 icmp).
type (
	NetOutRule  = garden.NetOutRule
	IPRange     = garden.IPRange
	PortRange   = garden.PortRange
	ICMPControl = garden.ICMPControl
)

// LoadConfig parses and validates stdin. Messages are upstream's, checked in
// upstream's order (the first problem wins: garden shows one error).
func LoadConfig(stdin []byte) (*Config, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, fmt.Errorf("loading wrapper config: %w", err)
	}
	switch {
	case c.Datastore == "":
		return nil, fmt.Errorf("missing datastore path")
	case c.IPTablesLockFile == "":
		return nil, fmt.Errorf("missing iptables lock file path")
	case c.InstanceAddress == "":
		return nil, fmt.Errorf("missing instance address")
	case len(c.UnderlayIPs) < 1:
		return nil, fmt.Errorf("missing underlay ips")
	case c.IngressTag == "":
		return nil, fmt.Errorf("missing ingress tag")
	case c.VTEPName == "":
		return nil, fmt.Errorf("missing vtep device name")
	case c.IPTablesDeniedLogsPerSec <= 0:
		return nil, fmt.Errorf("invalid denied logs per sec")
	case c.IPTablesAcceptedUDPLogsPerSec <= 0:
		return nil, fmt.Errorf("invalid accepted udp logs per sec")
	}
	if c.Delegate == nil {
		c.Delegate = map[string]any{}
	}
	if _, ok := c.Delegate["cniVersion"]; !ok {
		c.Delegate["cniVersion"] = "1.0.0"
	}
	switch {
	case c.OutConn.Burst <= 0:
		return nil, fmt.Errorf("invalid outbound connection burst")
	case c.OutConn.RatePerSec <= 0:
		return nil, fmt.Errorf("invalid outbound connection rate")
	case c.PolicyAgentForcePollAddress == "":
		return nil, fmt.Errorf("validator: PolicyAgentForcePollAddress: zero value")
	}
	if _, err := iptables.ParseFlavor(c.IPTablesFlavor); err != nil {
		return nil, err
	}
	switch c.EnforcementBackend {
	case "":
		c.EnforcementBackend = BackendIPTables
	case BackendIPTables, BackendNFTables:
	default:
		return nil, fmt.Errorf("invalid enforcement backend %q (want iptables or nftables)", c.EnforcementBackend)
	}
	if _, err := overlay6.ParseConfig(c.IPv6OverlayNetwork); err != nil {
		return nil, fmt.Errorf("%s: %w", overlay6.ConfigKey, err)
	}
	return c, nil
}

// IPv6 is the dual-stack overlay (the zero Network when IPv4 only);
// LoadConfig has checked it.
func (c *Config) IPv6() overlay6.Network {
	n, _ := overlay6.ParseConfig(c.IPv6OverlayNetwork)
	return n
}

// The values of enforcement_backend.
const (
	BackendIPTables = "iptables"
	BackendNFTables = "nftables"
)

// NFTables reports whether the config selects the nftables backend.
func (c *Config) NFTables() bool { return c.EnforcementBackend == BackendNFTables }

// netOutRules converts garden rules: protocol 1 tcp, 2 udp, 3 icmp, 4
// icmpv6, anything else all; ICMP type/code only when the code is given.
func netOutRules(in []NetOutRule) []rules.NetOutRule {
	out := make([]rules.NetOutRule, 0, len(in))
	for _, g := range in {
		r := rules.NetOutRule{Log: g.Log}
		switch g.Protocol {
		case 1:
			r.Protocol = rules.TCP
		case 2:
			r.Protocol = rules.UDP
		case 3:
			r.Protocol = rules.ICMP
		case garden.ProtocolICMPv6:
			r.Protocol = rules.ICMPv6
		default:
			r.Protocol = rules.All
		}
		for _, n := range g.Networks {
			start, _ := netip.AddrFromSlice(n.Start)
			end, _ := netip.AddrFromSlice(n.End)
			r.Networks = append(r.Networks, rules.IPRange{Start: start.Unmap(), End: end.Unmap()})
		}
		for _, p := range g.Ports {
			r.Ports = append(r.Ports, rules.PortRange{Start: p.Start, End: p.End})
		}
		if g.ICMPs != nil && g.ICMPs.Code != nil {
			r.ICMP = &rules.ICMPInfo{Type: g.ICMPs.Type, Code: *g.ICMPs.Code}
		}
		out = append(out, r)
	}
	return out
}
