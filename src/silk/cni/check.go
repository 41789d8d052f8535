package cni

import (
	"context"
	"fmt"
	"net"
	"path/filepath"

	"code.cloudfoundry.org/lager/v3"
	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/netlinkx"
)

// Check verifies that what ADD built is still there: the reservation, both
// veth ends with their MACs, addresses and neighbours, the container's
// default route, the host's route to the container and the store entry;
// when prevResult carries an IPv6 address (a dual-stack ADD), the IPv6
// addresses, neighbours and routes too.
// Upstream always fails CHECK; the conflist disables it, so this only runs
// when an operator or a runtime asks for it.
func (p *Plugin) Check(ctx context.Context, args *skel.CmdArgs) (err error) {
	logger := p.logger().Session("plugin-check", lager.Data{"container-id": args.ContainerID, "netns": args.Netns, "ifname": args.IfName})
	defer logFailure(logger, "check", &err)

	conf, err := parseNetConfFor(args.StdinData, "CHECK", "0.4.0")
	if err != nil {
		return err
	}
	fail := func(err error) error { return stepError("check failed", err) }

	var want, want6 net.IP
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return fail(fmt.Errorf("parsing prevResult: %w", err))
	}
	if conf.PrevResult != nil {
		prev, err := current.NewResultFromResult(conf.PrevResult)
		if err != nil {
			return fail(fmt.Errorf("converting prevResult: %w", err))
		}
		for _, ipc := range prev.IPs {
			if ip4 := ipc.Address.IP.To4(); ip4 != nil {
				if want == nil {
					want = ip4
				}
			} else if want6 == nil {
				want6 = ipc.Address.IP
			}
		}
	}
	ips := newIPAM(conf).lookup(args.ContainerID, args.IfName)
	if len(ips) == 0 {
		return fail(fmt.Errorf("host-local: Failed to find address added by container %v", args.ContainerID))
	}
	if want == nil {
		want = ips[0]
	} else if !containsIP(ips, want) {
		return fail(fmt.Errorf("prevResult address %s is not the one reserved for the container (%v)", want, ips))
	}
	n, err := NamesFor(want)
	if err != nil {
		return fail(err)
	}
	// A dual-stack container's IPv6 address carries its IPv4 address in
	// the low 32 bits (overlay6).
	if want6 != nil && (len(want6) != net.IPv6len || !net.IP(want6[12:16]).Equal(want)) {
		return fail(fmt.Errorf("prevResult IPv6 address %s is not derived from the container's IPv4 address %s", want6, want))
	}

	containerNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return fail(fmt.Errorf("getting container namespace: %w", err))
	}
	defer containerNS.Close()
	hostNS, closeHost, err := p.hostNS()
	if err != nil {
		return fail(err)
	}
	defer closeHost()

	var peerIndex int
	err = containerNS.Do(func(ns.NetNS) error {
		link, err := checkEnd(args.IfName, n.ContainerMAC, n.ContainerIP, HostIP, n.HostMAC)
		if err != nil {
			return fmt.Errorf("container: %w", err)
		}
		peerIndex = link.Attrs().ParentIndex
		if !hasRoute(link, nil, HostIP) {
			return fmt.Errorf("container: no default route via %s on %s", HostIP, args.IfName)
		}
		if want6 == nil {
			return nil
		}
		if err := checkEnd6(link, slash128(want6), HostIP6, n.HostMAC); err != nil {
			return fmt.Errorf("container: %w", err)
		}
		if !hasRoute6(link, nil, HostIP6) {
			return fmt.Errorf("container: no IPv6 default route via %s on %s", HostIP6, args.IfName)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}
	err = hostNS.Do(func(ns.NetNS) error {
		link, err := checkEnd(n.HostDevice, n.HostMAC, HostIP, n.ContainerIP, n.ContainerMAC)
		if err != nil {
			return fmt.Errorf("host: %w", err)
		}
		if peerIndex != 0 && link.Attrs().Index != peerIndex {
			return fmt.Errorf("host: %s is not the peer of the container's %s", n.HostDevice, args.IfName)
		}
		if !hasRoute(link, slash32(n.ContainerIP), nil) {
			return fmt.Errorf("host: no route to %s via %s", n.ContainerIP, n.HostDevice)
		}
		if want6 == nil {
			return nil
		}
		if err := checkEnd6(link, &net.IPNet{IP: HostIP6, Mask: net.CIDRMask(64, 128)}, want6, n.ContainerMAC); err != nil {
			return fmt.Errorf("host: %w", err)
		}
		if !hasRoute6(link, slash128(want6), nil) {
			return fmt.Errorf("host: no route to %s via %s", want6, n.HostDevice)
		}
		return nil
	})
	if err != nil {
		return fail(err)
	}

	all, err := Store{Path: conf.Datastore}.ReadAll()
	if err != nil {
		return fail(fmt.Errorf("reading datastore: %w", err))
	}
	handle := filepath.Base(args.Netns)
	if c, ok := all[handle]; !ok || !net.ParseIP(c.IP).Equal(n.ContainerIP) {
		return fail(fmt.Errorf("datastore %s has no entry %s → %s", conf.Datastore, handle, n.ContainerIP))
	}
	return nil
}

// checkEnd verifies one veth end in the current namespace.
func checkEnd(dev string, mac net.HardwareAddr, local, peer net.IP, peerMAC net.HardwareAddr) (netlink.Link, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("link %s: %w", dev, err)
	}
	if link.Type() != "veth" {
		return nil, fmt.Errorf("link %s is a %s, not a veth", dev, link.Type())
	}
	a := link.Attrs()
	if a.HardwareAddr.String() != mac.String() {
		return nil, fmt.Errorf("link %s has MAC %s, want %s", dev, a.HardwareAddr, mac)
	}
	if a.Flags&net.FlagUp == 0 {
		return nil, fmt.Errorf("link %s is down", dev)
	}
	addrs, err := netlinkx.AddrList(netlinkx.Host, link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", dev, err)
	}
	found := false
	for _, ad := range addrs {
		if ad.IP.Equal(local) && ad.Peer != nil && ad.Peer.IP.Equal(peer) {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("link %s has no address %s peer %s", dev, local, peer)
	}
	neighs, err := netlinkx.NeighList(netlinkx.Host, a.Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing neighbours of %s: %w", dev, err)
	}
	found = false
	for _, nb := range neighs {
		if nb.IP.Equal(peer) && nb.HardwareAddr.String() == peerMAC.String() && nb.State&netlink.NUD_PERMANENT != 0 {
			found = true
		}
	}
	if !found {
		return nil, fmt.Errorf("link %s has no permanent neighbour %s → %s", dev, peer, peerMAC)
	}
	return link, nil
}

// checkEnd6 verifies a veth end's IPv6 address and permanent neighbour.
func checkEnd6(link netlink.Link, local *net.IPNet, peer net.IP, peerMAC net.HardwareAddr) error {
	dev := link.Attrs().Name
	addrs, err := netlinkx.AddrList(netlinkx.Host, link, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("listing IPv6 addresses of %s: %w", dev, err)
	}
	found := false
	for _, ad := range addrs {
		found = found || ad.IPNet.String() == local.String()
	}
	if !found {
		return fmt.Errorf("link %s has no address %s", dev, local)
	}
	neighs, err := netlinkx.NeighList(netlinkx.Host, link.Attrs().Index, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("listing IPv6 neighbours of %s: %w", dev, err)
	}
	for _, nb := range neighs {
		if nb.IP.Equal(peer) && nb.HardwareAddr.String() == peerMAC.String() && nb.State&netlink.NUD_PERMANENT != 0 {
			return nil
		}
	}
	return fmt.Errorf("link %s has no permanent neighbour %s → %s", dev, peer, peerMAC)
}

// hasRoute reports a main-table IPv4 route on link to dst (nil = default)
// via gw (nil = any).
func hasRoute(link netlink.Link, dst *net.IPNet, gw net.IP) bool {
	return hasRouteFamily(link, netlink.FAMILY_V4, dst, gw)
}

// hasRoute6 is hasRoute for IPv6.
func hasRoute6(link netlink.Link, dst *net.IPNet, gw net.IP) bool {
	return hasRouteFamily(link, netlink.FAMILY_V6, dst, gw)
}

func hasRouteFamily(link netlink.Link, family int, dst *net.IPNet, gw net.IP) bool {
	routes, err := netlinkx.RouteListFiltered(netlinkx.Host, family, &netlink.Route{LinkIndex: link.Attrs().Index}, netlink.RT_FILTER_OIF)
	if err != nil {
		return false
	}
	for _, r := range routes {
		isDefault := r.Dst == nil || (r.Dst.IP.IsUnspecified() && isZeroMask(r.Dst.Mask))
		if dst == nil && !isDefault {
			continue
		}
		if dst != nil && (r.Dst == nil || r.Dst.String() != dst.String()) {
			continue
		}
		if gw != nil && !r.Gw.Equal(gw) {
			continue
		}
		return true
	}
	return false
}

func isZeroMask(m net.IPMask) bool {
	ones, _ := m.Size()
	return ones == 0
}
