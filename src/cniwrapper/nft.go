package cniwrapper

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/nft"
)

// The wrapper's part of netman's nftables table (enforcement_backend:
// nftables): per container the equivalents of its iptables chains —
// input--<handle> (container to host), netout--<handle> (egress through the
// underlay), overlay--<handle> (traffic to the container, the default deny
// between containers), masquerade--<handle> — and its entries in the
// skeleton's dispatch maps, which send a packet straight to its container's
// chain (in iptables FORWARD jumps to every container's overlay chain in
// turn). Port mappings are two map entries per mapping (DNAT and the
// ingress mark) instead of a netin chain per table.

// NFTAddPlan is everything ADD installs for one container in nftables mode.
type NFTAddPlan struct {
	Handle string
	IP     netip.Addr
	// Objects are the container's own chains.
	Objects *nft.Ruleset
	// Dispatch holds only the container's elements of the skeleton's maps.
	Dispatch *nft.Ruleset
	// NetOut builds the container's egress chain and sets from garden's
	// netOutRules, for when the policy agent has dynamic ASGs turned off
	// (its answer 405).
	NetOut func(netOut []NetOutRule) (rs *nft.Ruleset, warnings []string)
}

// PlanAddNFT validates the config against the container exactly as PlanAdd
// does (same checks, same errors) and plans its nftables objects.
func PlanAddNFT(cfg *Config, c Container) (*NFTAddPlan, error) {
	if _, err := PlanAdd(cfg, c); err != nil {
		return nil, err
	}
	ch := nft.ChainsFor(c.Handle)
	for _, n := range append(ch.All(), ch.NetOut+"--ports-log") {
		if err := nft.ValidName(n); err != nil {
			return nil, fmt.Errorf("invalid Container ID: %w", err)
		}
	}
	// PlanAdd has checked every value below.
	v6 := cfg.IPv6()
	dns, _ := LocalDNSServers(cfg.DNSServers)
	tcpSvcs, _ := hostServices("host tcp services", cfg.HostTCPServices)
	udpSvcs, _ := hostServices("host udp services", cfg.HostUDPServices)
	tcpSvcs6, _ := hostServices6("host tcp services ipv6", cfg.HostTCPServicesIPv6)
	deny, _ := rules.ParseDenyNetworksDual(cfg.DenyNetworks.Always, cfg.DenyNetworks.Running, cfg.DenyNetworks.Staging, v6.Enabled())
	ingress, _ := nft.ParseTag(cfg.IngressTag)
	noMasq, _ := parseNoMasquerade(cfg.NoMasqueradeCIDRRange)

	egress := nft.Egress{
		Chain: ch.NetOut, Handle: c.Handle, Workload: c.Workload, Deny: deny,
		Conn: rules.OutConn{
			Limit: cfg.OutConn.Limit, Logging: cfg.OutConn.Logging, DryRun: cfg.OutConn.DryRun,
			Burst: cfg.OutConn.Burst, RatePerSec: cfg.OutConn.RatePerSec,
		},
		ASGLogging:            cfg.IPTablesASGLogging,
		DeniedLogsPerSec:      cfg.IPTablesDeniedLogsPerSec,
		AcceptedUDPLogsPerSec: cfg.IPTablesAcceptedUDPLogsPerSec,
		SharedSets:            true,
		IPv6:                  v6.Enabled(),
	}

	allow := func(proto string, a netip.Addr, port uint16) string {
		return "ip daddr " + nft.Addr(a) + " " + proto + " dport " + strconv.Itoa(int(port)) + " accept"
	}
	input := []string{"ct state established,related accept"}
	for _, d := range dns {
		input = append(input, allow("tcp", d, 53), allow("udp", d, 53))
	}
	for _, s := range tcpSvcs {
		input = append(input, allow("tcp", s.Addr(), s.Port()))
	}
	for _, s := range udpSvcs {
		input = append(input, allow("udp", s.Addr(), s.Port()))
	}
	if v6.Enabled() {
		// Neighbour discovery with the gateway fe80::1 is not tracked by
		// conntrack: without this the reject below drops it.
		input = append(input, nft.NeighborDiscovery...)
		for _, s := range tcpSvcs6 {
			input = append(input, "ip6 daddr "+nft.Addr(s.Addr())+" tcp dport "+strconv.Itoa(int(s.Port()))+" accept")
		}
	}
	input = append(input, nft.Reject)

	overlay := []string{"ct state established,related accept", "meta mark " + nft.Mark(ingress) + " accept"}
	if cfg.IPTablesC2CLogging {
		overlay = append(overlay, nft.LimitedLog(cfg.IPTablesDeniedLogsPerSec, "DENY_C2C_"+c.Handle))
	}
	overlay = append(overlay, nft.Reject)

	masq := "oifname != " + nft.Quote(cfg.VTEPName) + " masquerade"
	if noMasq.IsValid() {
		masq = "ip daddr != " + nft.Prefix(noMasq) + " " + masq
	}

	masquerade := []string{masq}
	if v6.Enabled() && noMasq.IsValid() {
		// The IPv4 rule matches IPv4 packets only (its ip daddr); IPv6
		// traffic stays unmasqueraded inside the IPv6 overlay.
		masquerade = append(masquerade, "ip6 daddr != "+nft.Prefix(v6.Prefix())+" oifname != "+nft.Quote(cfg.VTEPName)+" masquerade")
	}

	objects := &nft.Ruleset{Chains: []*nft.Chain{
		{Name: ch.Input, Rules: input},
		{Name: ch.NetOut, Rules: egress.Defaults()},
		{Name: ch.Overlay, Rules: overlay},
		{Name: ch.Masquerade, Rules: masquerade},
	}}

	ip := nft.Addr(c.IP)
	sk := nft.Skeleton()
	dispatch := &nft.Ruleset{}
	add := func(set string, els ...nft.Element) {
		s := *sk.Set(set)
		s.Elements = els
		dispatch.Sets = append(dispatch.Sets, &s)
	}
	// dispatchTo adds the container's entries, keyed by ip, to one
	// family's dispatch maps; hostIP ("": none) is the DNAT destination of
	// its port mappings.
	dispatchTo := func(m dispatchMaps, ip, hostIP string) {
		add(m.input, nft.Element{Key: ip, Value: nft.Jump(ch.Input)})
		var netout []nft.Element
		for _, ifname := range c.Interfaces {
			netout = append(netout, nft.Element{Key: nft.Key(ip, nft.Quote(ifname)), Value: nft.Jump(ch.NetOut)})
		}
		add(m.netOut, netout...)
		add(m.overlayEgress, nft.Element{Key: nft.Key(ip, nft.Quote(cfg.VTEPName))})
		add(m.overlay, nft.Element{Key: ip, Value: nft.Jump(ch.Overlay)})
		add(m.masquerade, nft.Element{Key: ip, Value: nft.Jump(ch.Masquerade)})
		var dnat, marks []nft.Element
		if hostIP != "" {
			for _, pm := range cfg.RuntimeConfig.PortMappings {
				hp := strconv.Itoa(pm.HostPort)
				dnat = append(dnat, nft.Element{Key: nft.Key(hostIP, hp), Value: nft.Key(ip, strconv.Itoa(pm.ContainerPort))})
				for _, ifname := range c.Interfaces {
					marks = append(marks, nft.Element{Key: nft.Key(hostIP, nft.Quote(ifname), hp), Value: nft.Mark(ingress)})
				}
			}
		}
		add(m.portMappings, dnat...)
		add(m.ingressMarks, marks...)
	}
	hostIP := ""
	if len(cfg.RuntimeConfig.PortMappings) > 0 {
		hostIP = nft.Addr(netip.MustParseAddr(cfg.InstanceAddress)) // checked by PlanAdd
	}
	dispatchTo(dispatchMaps4, ip, hostIP)
	if v6.Enabled() {
		// The same chains, keyed by the container's IPv6 address.
		hostIP6 := ""
		if cfg.InstanceAddressIPv6 != "" && len(cfg.RuntimeConfig.PortMappings) > 0 {
			hostIP6 = nft.Addr(netip.MustParseAddr(cfg.InstanceAddressIPv6)) // checked by PlanAdd
		}
		dispatchTo(dispatchMaps6, nft.Addr(v6.Addr(c.IP)), hostIP6)
	}

	return &NFTAddPlan{
		Handle: c.Handle, IP: c.IP, Objects: objects, Dispatch: dispatch,
		NetOut: func(netOut []NetOutRule) (*nft.Ruleset, []string) {
			dst := nft.ConvertDual(netOutRules(netOut), egress.ASGLogging, egress.IPv6)
			return egress.Ruleset(dst), dst.Warnings
		},
	}, nil
}

// dispatchMaps names one family's dispatch maps (nft.Skeleton).
type dispatchMaps struct {
	input, netOut, overlayEgress, overlay, masquerade, portMappings, ingressMarks string
}

var (
	dispatchMaps4 = dispatchMaps{nft.MapInput, nft.MapNetOut, nft.SetOverlayEgress, nft.MapOverlay, nft.MapMasquerade, nft.MapPortMappings, nft.MapIngressMarks}
	dispatchMaps6 = dispatchMaps{nft.MapInput6, nft.MapNetOut6, nft.SetOverlayEgress6, nft.MapOverlay6, nft.MapMasquerade6, nft.MapPortMappings6, nft.MapIngressMarks6}
)

func (m dispatchMaps) names() []string {
	return []string{m.input, m.netOut, m.overlayEgress, m.overlay, m.masquerade, m.portMappings, m.ingressMarks}
}

// NFTAdd installs a planned container in one transaction: the skeleton
// (constant; see nft.AddSkeleton), the container's chains, then its
// dispatch entries, so the container's traffic is filtered from the moment
// the transaction commits. A retried ADD rewrites the same objects.
func NFTAdd(ctx context.Context, d nft.Driver, p *NFTAddPlan) error {
	tx := d.NewTransaction()
	if !d.Has(ctx, skeletonChains, skeletonSets) {
		nft.AddSkeleton(tx)
	}
	nft.Put(tx, p.Objects)
	nft.AddElements(tx, p.Dispatch)
	return d.Run(ctx, tx)
}

// skeletonChains and skeletonSets name the skeleton's objects: when they
// are all there, ADD leaves the skeleton alone (its rules are constant,
// and the agent re-asserts them in each full resync), so the transaction
// is only the container's chains, rules and elements, which the Kernel
// sends over netlink without running nft.
var skeletonChains, skeletonSets = func() (chains, sets []string) {
	sk := nft.Skeleton()
	for _, c := range sk.Chains {
		chains = append(chains, c.Name)
	}
	for _, s := range sk.Sets {
		sets = append(sets, s.Name)
	}
	return chains, sets
}()

// NFTSetNetOut replaces the container's egress chain with garden's netOut
// rules (rs from NFTAddPlan.NetOut), in one transaction. The destination
// sets are shared by every container with the same rules (nft.Egress
// SharedSets): when they are in the table already, the transaction holds
// only the container's chains and rate meter, whatever the rules; else
// (or when a DEL removed them in between) it adds them with their
// elements, atomically with the chains that look them up.
func NFTSetNetOut(ctx context.Context, d nft.Driver, rs *nft.Ruleset) error {
	own := &nft.Ruleset{Chains: rs.Chains}
	var shared []string
	for _, s := range rs.Sets {
		if strings.HasPrefix(s.Name, nft.SharedSetPrefix) {
			shared = append(shared, s.Name)
		} else {
			own.Sets = append(own.Sets, s)
		}
	}
	if len(shared) > 0 && d.Has(ctx, nil, shared) {
		tx := d.NewTransaction()
		nft.Put(tx, own)
		err := d.Run(ctx, tx)
		var re *nft.RunError
		if !errors.As(err, &re) {
			return err
		}
	}
	tx := d.NewTransaction()
	nft.Put(tx, rs)
	return d.Run(ctx, tx)
}

// nftDispatchSets are the skeleton maps and sets holding container entries.
var nftDispatchSets = dispatchMaps4.names()

// nftDispatchSets6 are their IPv6 twins, read by DEL on dual-stack cells
// only (each read is an nft process).
var nftDispatchSets6 = dispatchMaps6.names()

// NFTDel removes everything ADD (and the 405 netOut path) installed for a
// container: it reads the dispatch maps (small: one entry per container)
// and deletes exactly the entries pointing at the container's chains or
// naming its IP, then its chains and rate meter, in one transaction, and
// then every shared destination set no chain looks up any more. What is
// already gone is skipped, so DEL never fails on it. ip may be invalid
// (the metadata store lost it): it is then recovered from input-dispatch.
// The agent's asg--<handle> chain is not the wrapper's: the agent removes
// it on its next sync, as in iptables mode.
func NFTDel(ctx context.Context, d nft.Driver, handle string, ip netip.Addr) error {
	return nftDel(ctx, d, handle, ip, nftDispatchSets)
}

// NFTDelDualStack is NFTDel on a dual-stack cell: it also reads the IPv6
// dispatch maps and removes the container's entries there.
func NFTDelDualStack(ctx context.Context, d nft.Driver, handle string, ip netip.Addr) error {
	return nftDel(ctx, d, handle, ip, append(slices.Clone(nftDispatchSets), nftDispatchSets6...))
}

func nftDel(ctx context.Context, d nft.Driver, handle string, ip netip.Addr, sets []string) error {
	cur := nft.NewState()
	sk := nft.Skeleton()
	for _, n := range sets {
		s, err := d.ReadSet(ctx, n, sk.Set(n).IsMap())
		if err != nil {
			return err
		}
		if s != nil {
			cur.Sets[n] = s
		}
	}
	tx := d.NewTransaction()
	PlanDelNFT(tx, cur, handle, ip)
	if err := d.Run(ctx, tx); err != nil {
		return err
	}
	// Then the shared destination sets no chain looks up any more (this
	// container's, if it was their last user, and any a crashed DEL left).
	_, err := d.RemoveUnusedSets(ctx, nft.SharedSetPrefix)
	return err
}

// PlanDelNFT adds to tx the removal of a container's objects, given the
// dispatch maps as they are (cur needs only those sets).
func PlanDelNFT(tx *knftables.Transaction, cur *nft.State, handle string, ip netip.Addr) {
	ch := nft.ChainsFor(handle)
	if !ip.IsValid() {
		if s := cur.Sets[nft.MapInput]; s != nil {
			for k, v := range s.Elements {
				if v == nft.Jump(ch.Input) {
					ip, _ = netip.ParseAddr(k)
				}
			}
		}
	}
	ours := map[string]bool{}
	for _, c := range ch.All() {
		ours[nft.Jump(c)] = true
	}
	// The container's IPv6 address, on a dual-stack cell: the key of its
	// entries in the IPv6 maps (found by the chain it jumps to).
	addr6 := ""
	if s := cur.Sets[nft.MapInput6]; s != nil {
		for k, v := range s.Elements {
			if v == nft.Jump(ch.Input) {
				addr6 = k
			}
		}
	}
	addr := ""
	if ip.IsValid() {
		addr = nft.Addr(ip)
	}
	del := &nft.Ruleset{}
	hostPorts := map[string]bool{} // "hostIP . port" of the container's DNAT entries
	sk := nft.Skeleton()
	for _, n := range append(slices.Clone(nftDispatchSets), nftDispatchSets6...) {
		s := cur.Sets[n]
		if s == nil {
			continue
		}
		set := *sk.Set(n)
		set.Elements = nil
		for _, k := range slices.Sorted(maps.Keys(s.Elements)) {
			v := s.Elements[k]
			first, _, _ := strings.Cut(k, " . ")
			mine := ours[v]
			switch n {
			case nft.SetOverlayEgress:
				mine = addr != "" && first == addr
			case nft.SetOverlayEgress6:
				mine = addr6 != "" && first == addr6
			case nft.MapPortMappings, nft.MapPortMappings6:
				to, _, _ := strings.Cut(v, " . ")
				mine = addr != "" && to == addr || addr6 != "" && to == addr6
				if mine {
					hostPorts[n+" "+k] = true
				}
			case nft.MapIngressMarks, nft.MapIngressMarks6:
				dnatMap := nft.MapPortMappings
				if n == nft.MapIngressMarks6 {
					dnatMap = nft.MapPortMappings6
				}
				f := strings.Split(k, " . ")
				mine = len(f) == 3 && hostPorts[dnatMap+" "+nft.Key(f[0], f[2])]
			}
			if mine {
				set.Elements = append(set.Elements, nft.Element{Key: k})
			}
		}
		if len(set.Elements) > 0 {
			del.Sets = append(del.Sets, &set)
		}
	}
	nft.DeleteElements(tx, del)
	nft.RemoveChains(tx, append(ch.All(), ch.NetOut+"--log", ch.NetOut+"--rl-log")...)
	// The container's own set is its rate meter; the destination sets
	// are shared (NFTSetNetOut) and go when no chain looks them up.
	eg := nft.Egress{Chain: ch.NetOut, Handle: handle, Conn: rules.OutConn{Limit: true}, SharedSets: true, IPv6: addr6 != ""}
	for _, s := range eg.Ruleset(nil).Sets {
		if !strings.HasPrefix(s.Name, nft.SharedSetPrefix) {
			nft.RemoveSets(tx, s)
		}
	}
}
