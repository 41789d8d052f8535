package cni

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// macAttempts bounds how often a MAC is re-applied when something (udev's
// MACAddressPolicy on newer distributions) rewrites it behind our back.
const macAttempts = 10

func slash32(ip net.IP) *net.IPNet { return &net.IPNet{IP: ip, Mask: net.CIDRMask(32, 32)} }

func slash128(ip net.IP) *net.IPNet { return &net.IPNet{IP: ip, Mask: net.CIDRMask(128, 128)} }

// HostIP6 is, on a dual-stack cell, the link-local address every host-side
// veth carries (fe80::1/64) and every container's IPv6 default gateway.
var HostIP6 = net.ParseIP("fe80::1")

// createVeth creates the pair in the host namespace: the host end named
// s-… and the container end, named c-…, created straight inside the
// container namespace (no separate move). Both carry their MAC and MTU
// from birth.
func createVeth(hostNS, containerNS ns.NetNS, n Names, mtu int) error {
	attrs := netlink.NewLinkAttrs()
	attrs.Name = n.HostDevice
	attrs.MTU = mtu
	attrs.HardwareAddr = n.HostMAC
	veth := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         n.TempDevice,
		PeerHardwareAddr: n.ContainerMAC,
		PeerMTU:          uint32(mtu),
		PeerTxQLen:       -1,
		PeerNamespace:    netlink.NsFd(int(containerNS.Fd())),
	}
	return hostNS.Do(func(ns.NetNS) error {
		if err := netlink.LinkAdd(veth); err != nil {
			return fmt.Errorf("creating veth %s/%s: %w", n.HostDevice, n.TempDevice, err)
		}
		return nil
	})
}

// setupHost configures the host end: 169.254.0.1/32 peer <container>/32
// (which installs the host route to the container), a permanent neighbour
// for the container, no ARP, rp_filter, forwarding. With ip6 (a dual-stack
// cell) also fe80::1/64, a permanent neighbour and a /128 route for the
// container's IPv6 address, and IPv6 forwarding.
func setupHost(hostNS ns.NetNS, n Names, ip6 net.IP) error {
	return hostNS.Do(func(ns.NetNS) error {
		if err := basicSetup(n.HostDevice, n.HostMAC, HostIP, n.ContainerIP, n.ContainerMAC, ip6 != nil); err != nil {
			return err
		}
		if err := writeSysctl("net/ipv4/ip_forward", "1"); err != nil {
			return fmt.Errorf("enabling IPv4 forwarding: %w", err)
		}
		if ip6 == nil {
			return nil
		}
		link, err := setup6(n.HostDevice, &net.IPNet{IP: HostIP6, Mask: net.CIDRMask(64, 128)}, ip6, n.ContainerMAC)
		if err != nil {
			return err
		}
		route := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: slash128(ip6), Scope: netlink.SCOPE_LINK}
		if err := netlink.RouteAdd(route); err != nil {
			return fmt.Errorf("adding ipv6 route to container %s: %w", ip6, err)
		}
		if err := writeSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
			return fmt.Errorf("enabling IPv6 forwarding: %w", err)
		}
		return nil
	})
}

// setup6 gives a veth end, inside its namespace, its IPv6 address (nodad:
// the overlay hands out each address once, and DAD would hold it back)
// and a permanent neighbour for the peer.
func setup6(dev string, local *net.IPNet, peer net.IP, peerMAC net.HardwareAddr) (netlink.Link, error) {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return nil, fmt.Errorf("failed to find link %q: %w", dev, err)
	}
	neigh := &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       netlink.FAMILY_V6,
		State:        netlink.NUD_PERMANENT,
		IP:           peer,
		HardwareAddr: peerMAC,
	}
	if err := netlink.NeighSet(neigh); err != nil {
		return nil, fmt.Errorf("replace NDP with permanent neighbor rule: neigh add: %w", err)
	}
	addr := &netlink.Addr{IPNet: local, Flags: unix.IFA_F_NODAD}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return nil, fmt.Errorf("adding IPv6 address %s: %w", local, err)
	}
	return link, nil
}

// setupContainer renames c-… to ifName and mirrors the host setup, then
// routes everything via 169.254.0.1; with ip6, also the container's IPv6
// /128 and every IPv6 destination via fe80::1.
func setupContainer(containerNS ns.NetNS, n Names, ifName string, ip6 net.IP) error {
	return containerNS.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(n.TempDevice)
		if err != nil {
			return fmt.Errorf("failed to find link %q: %w", n.TempDevice, err)
		}
		if err := netlink.LinkSetName(link, ifName); err != nil {
			return fmt.Errorf("renaming link in container: %w", err)
		}
		if err := basicSetup(ifName, n.ContainerMAC, n.ContainerIP, HostIP, n.HostMAC, ip6 != nil); err != nil {
			return fmt.Errorf("setting up device in container: %w", err)
		}
		link, err = netlink.LinkByName(ifName)
		if err != nil {
			return fmt.Errorf("failed to find link %q: %w", ifName, err)
		}
		route := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			Gw:        HostIP,
			Src:       n.ContainerIP,
		}
		if err := netlink.RouteAdd(route); err != nil {
			return fmt.Errorf("adding route in container: %w, srcIP: %s, dstIP: 0.0.0.0/0, GW: %s", err, n.ContainerIP, HostIP)
		}
		if ip6 == nil {
			return nil
		}
		if _, err := setup6(ifName, slash128(ip6), HostIP6, n.HostMAC); err != nil {
			return fmt.Errorf("setting up device in container: %w", err)
		}
		route6 := &netlink.Route{
			LinkIndex: link.Attrs().Index,
			Dst:       &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
			Gw:        HostIP6,
		}
		if err := netlink.RouteAdd(route6); err != nil {
			return fmt.Errorf("adding ipv6 route in container: %w, dstIP: ::/0, GW: %s", err, HostIP6)
		}
		return nil
	})
}

// basicSetup is the point-to-point configuration both ends share; it runs
// inside the device's namespace.
func basicSetup(dev string, mac net.HardwareAddr, local, peer net.IP, peerMAC net.HardwareAddr, ipv6 bool) error {
	link, err := netlink.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("failed to find link %q: %w", dev, err)
	}
	if err := ensureMAC(link, mac); err != nil {
		return err
	}
	if ipv6 {
		// Dual stack: IPv6 on, and no DAD (addresses are nodad, and a
		// link-local address still in DAD would hold back the link).
		for key, v := range map[string]string{"disable_ipv6": "0", "accept_dad": "0"} {
			if err := writeSysctl(filepath.Join("net/ipv6/conf", dev, key), v); err != nil {
				return fmt.Errorf("enabling IPv6 on %s: %w", dev, err)
			}
		}
	} else {
		// IPv6 stays off on IPv4-only silk veths; some kernels lack it
		// entirely.
		_ = writeSysctl(filepath.Join("net/ipv6/conf", dev, "disable_ipv6"), "1")
	}

	if err := netlink.LinkSetARPOff(link); err != nil {
		return fmt.Errorf("replace ARP with permanent neighbor rule: set ARP off: %w", err)
	}
	neigh := &netlink.Neigh{
		LinkIndex:    link.Attrs().Index,
		Family:       netlink.FAMILY_V4,
		State:        netlink.NUD_PERMANENT,
		IP:           peer,
		HardwareAddr: peerMAC,
	}
	if err := netlink.NeighSet(neigh); err != nil {
		return fmt.Errorf("replace ARP with permanent neighbor rule: neigh add: %w", err)
	}
	addr := &netlink.Addr{IPNet: slash32(local), Peer: slash32(peer), Scope: int(netlink.SCOPE_LINK)}
	if err := netlink.AddrAdd(link, addr); err != nil {
		return fmt.Errorf("setting point to point address: adding IP address %s: %w", slash32(local), err)
	}
	if err := writeSysctl(filepath.Join("net/ipv4/conf", dev, "rp_filter"), "1"); err != nil {
		return fmt.Errorf("enable reverse path filtering: %w", err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("setting link %s up: %w", dev, err)
	}
	return nil
}

// ensureMAC re-applies mac until the kernel reports it.
func ensureMAC(link netlink.Link, mac net.HardwareAddr) error {
	got := link.Attrs().HardwareAddr
	for i := 0; i < macAttempts && got.String() != mac.String(); i++ {
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return fmt.Errorf("setting hardware address: %w", err)
		}
		l, err := netlink.LinkByIndex(link.Attrs().Index)
		if err != nil {
			return fmt.Errorf("failed to find link %q: %w", link.Attrs().Name, err)
		}
		got = l.Attrs().HardwareAddr
	}
	if got.String() != mac.String() {
		return fmt.Errorf("failed to set hardware addr after %d attempts", macAttempts)
	}
	return nil
}

// writeSysctl writes under /proc/sys. /proc/sys/net resolves against the
// writing thread's namespace, so this must run inside ns.Do.
func writeSysctl(key, value string) error {
	return os.WriteFile(filepath.Join("/proc/sys", key), []byte(value), 0o644)
}

// deleteLink removes the named link in the namespace; absent is fine.
// Deleting either end of a veth removes the pair with its addresses,
// neighbours and routes.
func deleteLink(netNS ns.NetNS, name string) (deleted bool, err error) {
	return deleteLinkIf(netNS, name, nil)
}

// isSilkContainerEnd reports a veth carrying silk's container MAC
// (ee:ee:<IPv4>): the only kind of container interface DEL may remove.
func isSilkContainerEnd(link netlink.Link) bool {
	mac := link.Attrs().HardwareAddr
	return link.Type() == "veth" && len(mac) == 6 && mac[0] == 0xee && mac[1] == 0xee
}

// deleteLinkIf is deleteLink that leaves the link alone unless ours
// reports it as ours (nil: any link).
func deleteLinkIf(netNS ns.NetNS, name string, ours func(netlink.Link) bool) (deleted bool, err error) {
	err = netNS.Do(func(ns.NetNS) error {
		link, err := netlink.LinkByName(name)
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			return fmt.Errorf("failed to find link %q: %w", name, err)
		}
		if ours != nil && !ours(link) {
			return errNotOurs
		}
		if err := netlink.LinkDel(link); err != nil {
			if isNotFound(err) {
				return nil
			}
			return fmt.Errorf("deleting link %q: %w", name, err)
		}
		deleted = true
		return nil
	})
	return deleted, err
}

// errNotOurs: the named interface exists but silk did not create it.
var errNotOurs = errors.New("interface was not created by silk-cni")

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}
