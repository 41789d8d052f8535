package cniwrapper

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
)

// Container is what ADD knows about the container it sets up.
type Container struct {
	Handle   string
	IP       netip.Addr
	Workload string // metadata container_workload
	// Interfaces are the underlay interface names (netout jumps, ingress
	// marks).
	Interfaces []string
}

// Chains are the chains cni-wrapper-plugin owns for one container.
type Chains struct {
	Input, NetOut, Overlay, Log, RateLimitLog string // filter
	NetIn                                     string // nat and mangle
}

// ChainsFor names a container's chains (28-character names, as upstream).
func ChainsFor(handle string) Chains {
	netout := rules.Prefix("netout", handle)
	return Chains{
		Input:        rules.Prefix("input", handle),
		NetOut:       netout,
		Overlay:      rules.Prefix("overlay", handle),
		Log:          rules.Postfix(netout, "log"),
		RateLimitLog: rules.Postfix(netout, "rl-log"),
		NetIn:        rules.Prefix("netin", handle),
	}
}

func (c Chains) filter() []string {
	return []string{c.Input, c.NetOut, c.Overlay, c.Log, c.RateLimitLog}
}

// AddPlan is everything ADD installs, one transaction per table.
type AddPlan struct {
	Filter, NAT, Mangle *iptables.Tx
	// NetOut builds the chain's egress rules when the policy agent has
	// dynamic ASGs turned off (its answer 405): garden's netOutRules and the
	// deny/limit/state rules, inserted above the defaults.
	NetOut func(netOut []NetOutRule, warn func(string)) *iptables.Tx
	// IPv6 is the dual-stack twin for ip6tables (same chain names, the
	// container's IPv6 overlay address); nil on an IPv4-only cell.
	IPv6 *AddPlan
}

// familyPlan is what differs between a container's IPv4 rules and their
// IPv6 twin.
type familyPlan struct {
	fam     iptables.Family
	ip      netip.Addr
	hostIP  netip.Addr // port mappings' destination; invalid: none
	dns     []netip.Addr
	tcpSvcs []netip.AddrPort
	udpSvcs []netip.AddrPort
	noMasq  netip.Prefix
}

// PlanAdd validates the config against the container and renders its rules.
// Every input is checked before anything is applied, so bad input fails
// ADD with nothing installed. With ipv6_overlay_network set, the plan has
// its IPv6 twin for the container's address overlay6 derives from c.IP.
func PlanAdd(cfg *Config, c Container) (*AddPlan, error) {
	if c.Handle == "" {
		return nil, fmt.Errorf("invalid Container ID")
	}
	if !c.IP.Is4() {
		return nil, fmt.Errorf("container IP %s is not IPv4", c.IP)
	}
	v6 := cfg.IPv6()

	dns, err := LocalDNSServers(cfg.DNSServers)
	if err != nil {
		return nil, err
	}
	tcpSvcs, err := hostServices("host tcp services", cfg.HostTCPServices)
	if err != nil {
		return nil, fmt.Errorf("initialize net out: input rules: %w", err)
	}
	udpSvcs, err := hostServices("host udp services", cfg.HostUDPServices)
	if err != nil {
		return nil, fmt.Errorf("initialize net out: input rules: %w", err)
	}
	tcpSvcs6, err := hostServices6("host tcp services ipv6", cfg.HostTCPServicesIPv6)
	if err != nil {
		return nil, fmt.Errorf("initialize net out: input rules: %w", err)
	}
	deny, err := rules.ParseDenyNetworksDual(cfg.DenyNetworks.Always, cfg.DenyNetworks.Running, cfg.DenyNetworks.Staging, v6.Enabled())
	if err != nil {
		return nil, fmt.Errorf("initialize net out: %w", err)
	}
	if _, err := strconv.ParseUint(cfg.IngressTag, 16, 32); err != nil {
		return nil, fmt.Errorf("invalid ingress tag %q: must be up to 8 hex digits", cfg.IngressTag)
	}
	noMasq, err := parseNoMasquerade(cfg.NoMasqueradeCIDRRange)
	if err != nil {
		return nil, err
	}
	var hostIP, hostIP6 netip.Addr
	for _, pm := range cfg.RuntimeConfig.PortMappings {
		if pm.HostPort <= 0 || pm.HostPort > 65535 {
			return nil, fmt.Errorf("cannot allocate port %d", pm.HostPort)
		}
		if pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return nil, fmt.Errorf("adding netin rule: invalid container port %d", pm.ContainerPort)
		}
		if !hostIP.IsValid() {
			if hostIP, err = netip.ParseAddr(cfg.InstanceAddress); err != nil || !hostIP.Is4() {
				return nil, fmt.Errorf("adding netin rule: invalid ip: %s", cfg.InstanceAddress)
			}
		}
		if v6.Enabled() && cfg.InstanceAddressIPv6 != "" && !hostIP6.IsValid() {
			if hostIP6, err = netip.ParseAddr(cfg.InstanceAddressIPv6); err != nil || !hostIP6.Is6() || hostIP6.Is4In6() {
				return nil, fmt.Errorf("adding netin rule: invalid ip: %s", cfg.InstanceAddressIPv6)
			}
		}
	}

	plan := planFamily(cfg, c, deny, v6.Enabled(), familyPlan{
		fam: iptables.IPv4, ip: c.IP, hostIP: hostIP, dns: dns, tcpSvcs: tcpSvcs, udpSvcs: udpSvcs, noMasq: noMasq,
	})
	if v6.Enabled() {
		// IPv6 traffic between containers stays on the overlay /96: it is
		// not masqueraded, as no_masquerade_cidr_range does for IPv4.
		plan.IPv6 = planFamily(cfg, c, deny, true, familyPlan{
			fam: iptables.IPv6, ip: v6.Addr(c.IP), hostIP: hostIP6, tcpSvcs: tcpSvcs6, noMasq: v6.Prefix(),
		})
	}
	return plan, nil
}

// planFamily renders one family's rules for the container.
func planFamily(cfg *Config, c Container, deny rules.DenyNetworks, dualStack bool, fp familyPlan) *AddPlan {
	ch := ChainsFor(c.Handle)
	ip := fp.ip
	netout := rules.NetOutChain{
		Handle:           c.Handle,
		Workload:         c.Workload,
		Deny:             deny,
		ASGLogging:       cfg.IPTablesASGLogging,
		DeniedLogsPerSec: cfg.IPTablesDeniedLogsPerSec,
		Conn: rules.OutConn{
			Limit:      cfg.OutConn.Limit,
			Logging:    cfg.OutConn.Logging,
			DryRun:     cfg.OutConn.DryRun,
			Burst:      cfg.OutConn.Burst,
			RatePerSec: cfg.OutConn.RatePerSec,
		},
		Family:    fp.fam,
		DualStack: dualStack,
	}

	// filter: declare the chains and hook them in (input, netout, overlay,
	// log, [rl-log] as upstream), then fill them in the same order.
	f := iptables.NewTx(iptables.Filter)
	f.DeclareChain(ch.Input).DeclareChain(ch.NetOut).DeclareChain(ch.Overlay).DeclareChain(ch.Log)
	if netout.Conn.RateLimitLogChainNeeded() {
		f.DeclareChain(ch.RateLimitLog)
	}
	f.Append("INPUT", rules.SourceJump(ip, ch.Input))
	for _, ifname := range c.Interfaces {
		f.Append("FORWARD", rules.SourceOutJump(ip, ifname, ch.NetOut))
	}
	f.Append("FORWARD", rules.Jump(ch.Overlay))

	f.Append(ch.Input, rules.RelatedEstablished())
	if fp.fam == iptables.IPv6 {
		f.Append(ch.Input, rules.NeighborDiscovery()...)
	}
	for _, d := range fp.dns {
		f.Append(ch.Input, rules.AllowDestinationPort("tcp", d, 53), rules.AllowDestinationPort("udp", d, 53))
	}
	for _, s := range fp.tcpSvcs {
		f.Append(ch.Input, rules.AllowDestinationPort("tcp", s.Addr(), int(s.Port())))
	}
	for _, s := range fp.udpSvcs {
		f.Append(ch.Input, rules.AllowDestinationPort("udp", s.Addr(), int(s.Port())))
	}
	f.Append(ch.Input, rules.RejectFor(fp.fam))

	f.Append(ch.NetOut, netout.Defaults()...)

	f.Append(ch.Overlay,
		rules.OverlayAllowEgress(cfg.VTEPName, ip),
		rules.OverlayRelatedEstablished(ip),
		rules.OverlayTagAccept(ip, cfg.IngressTag))
	if cfg.IPTablesC2CLogging {
		f.Append(ch.Overlay, rules.LimitedLog(ip, cfg.IPTablesDeniedLogsPerSec, "DENY_C2C_"+c.Handle))
	}
	f.Append(ch.Overlay, rules.OverlayReject(ip))

	f.Append(ch.Log,
		rules.LogNonUDPNew("OK_"+c.Handle),
		rules.LogUDPLimited(cfg.IPTablesAcceptedUDPLogsPerSec, "OK_"+c.Handle),
		rules.Accept())
	if netout.Conn.RateLimitLogChainNeeded() {
		f.Append(ch.RateLimitLog, netout.RateLimitLogRules()...)
	}

	// nat: port mappings, and the masquerade rule (upstream adds it last,
	// after the ASG call; its position in time changes nothing, since egress
	// is rejected until the netout rules exist, and it saves one exec).
	n := iptables.NewTx(iptables.NAT)
	n.DeclareChain(ch.NetIn)
	n.Append("PREROUTING", rules.Jump(ch.NetIn))
	m := iptables.NewTx(iptables.Mangle)
	m.DeclareChain(ch.NetIn)
	m.Append("PREROUTING", rules.Jump(ch.NetIn))
	if fp.hostIP.IsValid() {
		for _, pm := range cfg.RuntimeConfig.PortMappings {
			n.Append(ch.NetIn, rules.PortForward(fp.hostIP, pm.HostPort, ip, pm.ContainerPort))
			for _, ifname := range c.Interfaces {
				m.Append(ch.NetIn, rules.IngressMark(fp.hostIP, ifname, pm.HostPort, cfg.IngressTag))
			}
		}
	}
	n.Append("POSTROUTING", rules.Masquerade(ip, fp.noMasq, cfg.VTEPName))

	return &AddPlan{
		Filter: f, NAT: n, Mangle: m,
		NetOut: func(netOut []NetOutRule, warn func(string)) *iptables.Tx {
			l := netout.List(netOutRules(netOut), warn)
			return iptables.NewTx(iptables.Filter).Insert(ch.NetOut, 1, l...)
		},
	}
}

// LocalDNSServers returns the link-local IPv4 entries of dns_servers (the
// host-local resolvers containers may reach through INPUT).
func LocalDNSServers(servers []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range servers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf(`invalid DNS server "%s", must be valid IP address`, s)
		}
		if a.Is4() && a.IsLinkLocalUnicast() {
			out = append(out, a)
		}
	}
	return out, nil
}

func hostServices(key string, in []string) ([]netip.AddrPort, error) {
	return parseHostServices(key, in, false)
}

// hostServices6 parses host_tcp_services_ipv6: "[address]:port" entries
// with IPv6 addresses.
func hostServices6(key string, in []string) ([]netip.AddrPort, error) {
	return parseHostServices(key, in, true)
}

// parseHostServices parses "address:port" entries of one family.
func parseHostServices(key string, in []string, ipv6 bool) ([]netip.AddrPort, error) {
	out := make([]netip.AddrPort, 0, len(in))
	for _, s := range in {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%s: invalid port in %q", key, s)
		}
		a, err := netip.ParseAddr(host)
		switch {
		case !ipv6 && (err != nil || !a.Is4()):
			return nil, fmt.Errorf("%s: invalid IPv4 address in %q", key, s)
		case ipv6 && (err != nil || !a.Is6() || a.Is4In6() || a.Zone() != ""):
			return nil, fmt.Errorf("%s: invalid IPv6 address in %q", key, s)
		}
		out = append(out, netip.AddrPortFrom(a, uint16(p)))
	}
	return out, nil
}

func parseNoMasquerade(s string) (netip.Prefix, error) {
	if s == "" {
		return netip.Prefix{}, nil
	}
	if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil && a.Is4() {
		return netip.PrefixFrom(a, 32), nil
	}
	return netip.Prefix{}, fmt.Errorf("invalid no_masquerade_cidr_range %q", s)
}

// DelPlanner plans DEL against what the tables hold, so DEL removes exactly
// what exists of a container's chains and rules, whatever the config said
// when ADD ran, and never fails on something already gone.
type DelPlanner struct {
	Handle string
	// IP is the container IP from the metadata store; when unknown, the
	// filter planner recovers it from the INPUT jump.
	IP           netip.Addr
	NoMasquerade netip.Prefix
	VTEPName     string
	// Kept collects chains left in place (flushed) because a chain we do
	// not own still references them, e.g. netout--H--log from the policy
	// agent's asg- chain until its orphan cleanup runs.
	Kept []string
}

// DelTables are the tables DEL reads and changes.
var DelTables = []string{iptables.Filter, iptables.NAT, iptables.Mangle}

// Plan plans all three tables (filter first: when the store did not know
// the IP, it is recovered there for the masquerade rule).
func (d *DelPlanner) Plan(cur map[string]*iptables.State) ([]*iptables.Tx, error) {
	d.Kept = nil
	f, _ := d.Filter(cur[iptables.Filter])
	n, _ := d.NAT(cur[iptables.NAT])
	m, _ := d.Mangle(cur[iptables.Mangle])
	return []*iptables.Tx{f, n, m}, nil
}

// Filter removes the INPUT/FORWARD jumps and the input, netout, overlay,
// log and rl-log chains.
func (d *DelPlanner) Filter(cur *iptables.State) (*iptables.Tx, error) {
	ch := ChainsFor(d.Handle)
	if !d.IP.IsValid() {
		d.IP = ipFromInputJump(cur, ch.Input)
	}
	tx := iptables.NewTx(iptables.Filter)
	for _, c := range ch.filter() {
		iptables.DeleteJumps(tx, cur, c, "INPUT", "FORWARD")
	}
	d.Kept = append(d.Kept, iptables.RemoveChains(tx, cur, ch.filter()...)...)
	return tx, nil
}

// NAT removes the PREROUTING jump, netin--H and the masquerade rule.
func (d *DelPlanner) NAT(cur *iptables.State) (*iptables.Tx, error) {
	tx := d.removeNetIn(iptables.NAT, cur)
	if d.IP.IsValid() {
		exact := rules.Masquerade(d.IP, d.NoMasquerade, d.VTEPName)
		if iptables.DeleteMatching(tx, cur, "POSTROUTING", func(r iptables.Rule) bool { return r == exact }) == 0 {
			// The config's no_masquerade_cidr_range may have changed
			// since ADD: match our shape of rule for this IP instead.
			src := "-s " + rules.Host(d.IP) + " "
			vtep := "! -o " + d.VTEPName + " -j MASQUERADE"
			iptables.DeleteMatching(tx, cur, "POSTROUTING", func(r iptables.Rule) bool {
				s := string(r)
				return strings.HasPrefix(s, src) && strings.HasSuffix(s, vtep)
			})
		}
	}
	return tx, nil
}

// Mangle removes the PREROUTING jump and netin--H.
func (d *DelPlanner) Mangle(cur *iptables.State) (*iptables.Tx, error) {
	return d.removeNetIn(iptables.Mangle, cur), nil
}

// removeNetIn starts table's transaction with the removal of the
// PREROUTING jump to netin--H and of the chain (nat and mangle each have
// one).
func (d *DelPlanner) removeNetIn(table string, cur *iptables.State) *iptables.Tx {
	netIn := ChainsFor(d.Handle).NetIn
	tx := iptables.NewTx(table)
	iptables.DeleteJumps(tx, cur, netIn, "PREROUTING")
	d.Kept = append(d.Kept, iptables.RemoveChains(tx, cur, netIn)...)
	return tx
}

func ipFromInputJump(cur *iptables.State, input string) netip.Addr {
	for _, r := range cur.Rules("INPUT") {
		if t, _ := r.Target(); t != input {
			continue
		}
		f := strings.Fields(string(r))
		if len(f) >= 2 && f[0] == "-s" {
			if p, err := netip.ParsePrefix(f[1]); err == nil {
				return p.Addr()
			}
		}
	}
	return netip.Addr{}
}
