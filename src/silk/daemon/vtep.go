package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/netlinkx"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Links is the part of the kernel that manages the VTEP device: netlink and
// ethtool features (*System satisfies it).
type Links interface {
	Features
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkDel(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
	AddrAdd(link netlink.Link, addr *netlink.Addr) error
	AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
}

// VTEPSpec is everything the VTEP is created with.
type VTEPSpec struct {
	Name string
	// UnderlayIP is the VXLAN source address.
	UnderlayIP netip.Addr
	// UnderlayInterface is the parent device; empty means the interface
	// that holds UnderlayIP.
	UnderlayInterface string
	VNI               int
	Port              int
	// MTU 0 leaves the kernel default: the parent's MTU minus 50.
	MTU          int
	HardwareAddr net.HardwareAddr
	// Offloads are the ethtool features set before the link goes up.
	Offloads map[string]bool
	// Address is the lease's first address with the overlay's prefix
	// length, e.g. 10.255.17.0/16; added with scope link.
	Address netip.Prefix
}

// vtepSpec derives the VTEP from the config and a lease.
func vtepSpec(cfg Config, l lease.Lease) (VTEPSpec, error) {
	underlay, err := netip.ParseAddr(cfg.UnderlayIP)
	if err != nil {
		return VTEPSpec{}, fmt.Errorf("parse underlay ip: %s", cfg.UnderlayIP)
	}
	subnet, err := netip.ParsePrefix(l.OverlaySubnet)
	if err != nil {
		return VTEPSpec{}, fmt.Errorf("determine vtep overlay ip: %w", err)
	}
	mac, err := net.ParseMAC(l.OverlayHardwareAddr)
	if err != nil {
		return VTEPSpec{}, fmt.Errorf("parsing hardware address: %w", err)
	}
	return VTEPSpec{
		Name:              cfg.VTEPName,
		UnderlayIP:        underlay,
		UnderlayInterface: cfg.VxlanInterfaceName,
		VNI:               cfg.VNI,
		Port:              cfg.VTEPPort,
		MTU:               cfg.MTU,
		HardwareAddr:      mac,
		Offloads:          vtepOffloads(cfg),
		Address:           netip.PrefixFrom(subnet.Addr(), cfg.Overlay().Bits()),
	}, nil
}

// CreateVTEP creates the VXLAN device in one netlink request (so the MAC is
// right from the start: systemd-networkd rewrites MACs set afterwards), sets
// its offloads (s.Offloads), brings it up and adds its address. A device
// left half-configured by a failure is deleted again.
func CreateVTEP(h Links, s VTEPSpec) (err error) {
	parent, err := underlayLink(h, s)
	if err != nil {
		return err
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{
			Name:         s.Name,
			HardwareAddr: s.HardwareAddr,
			MTU:          s.MTU,
		},
		VxlanId:      s.VNI,
		VtepDevIndex: parent.Attrs().Index,
		SrcAddr:      s.UnderlayIP.AsSlice(),
		Port:         s.Port,
		GBP:          true,
		Learning:     false,
	}
	if err := h.LinkAdd(vx); err != nil {
		return fmt.Errorf("create link %s: %w", s.Name, err)
	}
	defer func() {
		if err != nil {
			_ = h.LinkDel(vx)
		}
	}()
	if _, err := SetOffloads(h, s.Name, s.Offloads); err != nil {
		return err
	}
	if err := h.LinkSetUp(vx); err != nil {
		return fmt.Errorf("up link: %w", err)
	}
	addr := &netlink.Addr{
		IPNet: &net.IPNet{IP: s.Address.Addr().AsSlice(), Mask: net.CIDRMask(s.Address.Bits(), 32)},
		Scope: unix.RT_SCOPE_LINK,
	}
	if err := h.AddrAdd(vx, addr); err != nil {
		return fmt.Errorf("add address: %w", err)
	}
	return nil
}

// EnsureAddress6 gives the VTEP its IPv6 gateway address on a dual-stack
// cell (the lease's first address mapped into the IPv6 overlay, with the
// lease's mapped prefix length: /120, or /128 for a single-IP lease), nodad:
// nothing else on the overlay may claim it. It runs on every start, so a
// VTEP kept from an IPv4-only start gets it too; an address already there
// is left alone.
func EnsureAddress6(h Links, name string, addr netip.Prefix) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link: %w", err)
	}
	have, err := netlinkx.AddrList(h, link, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("list ipv6 addresses: %w", err)
	}
	for _, a := range have {
		if ip, ok := addrOf(a.IP); ok && ip == addr.Addr() {
			return nil
		}
	}
	a := &netlink.Addr{
		IPNet: &net.IPNet{IP: addr.Addr().AsSlice(), Mask: net.CIDRMask(addr.Bits(), 128)},
		Flags: unix.IFA_F_NODAD,
	}
	if err := h.AddrAdd(link, a); err != nil {
		if errors.Is(err, unix.EACCES) {
			return fmt.Errorf("add ipv6 address %s: %w (is IPv6 disabled on the cell? net.ipv6.conf.%s.disable_ipv6)", addr, err, name)
		}
		return fmt.Errorf("add ipv6 address %s: %w", addr, err)
	}
	return nil
}

// address6 is the VTEP's IPv6 address for a lease on a dual-stack cell.
func address6(n overlay6.Network, leaseSubnet string) (netip.Prefix, error) {
	subnet, err := netip.ParsePrefix(leaseSubnet)
	if err != nil || !subnet.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("determine vtep overlay ipv6 address: invalid lease subnet %q", leaseSubnet)
	}
	return netip.PrefixFrom(n.Addr(subnet.Addr()), n.Prefix6(subnet).Bits()), nil
}

// underlayLink finds the VTEP's parent: the named interface, or the one
// holding the underlay IP.
func underlayLink(h Links, s VTEPSpec) (netlink.Link, error) {
	if s.UnderlayInterface != "" {
		l, err := h.LinkByName(s.UnderlayInterface)
		if err != nil {
			return nil, fmt.Errorf("find device from name %s: %w", s.UnderlayInterface, err)
		}
		return l, nil
	}
	addrs, err := netlinkx.AddrList(h, nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("find device from ip %s: list addresses: %w", s.UnderlayIP, err)
	}
	for _, a := range addrs {
		if ip, ok := addrOf(a.IP); ok && ip == s.UnderlayIP {
			return &netlink.Device{LinkAttrs: netlink.LinkAttrs{Index: a.LinkIndex}}, nil
		}
	}
	return nil, fmt.Errorf("find device from ip %s: no interface with address %s", s.UnderlayIP, s.UnderlayIP)
}

// VTEPState is what start-up reads back from an existing VTEP.
type VTEPState struct {
	Index        int
	HardwareAddr net.HardwareAddr
	IP           netip.Addr // first IPv4 address
	MTU          int
}

// errNoAddress is a VTEP without an IPv4 address: a creation cut short.
var errNoAddress = errors.New("no addresses")

// ReadVTEP reads the device's MAC, first IPv4 address and MTU.
func ReadVTEP(h Links, name string) (VTEPState, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return VTEPState{}, fmt.Errorf("find link: %w", err)
	}
	addrs, err := netlinkx.AddrList(h, link, netlink.FAMILY_V4)
	if err != nil {
		return VTEPState{}, fmt.Errorf("list addresses: %w", err)
	}
	if len(addrs) == 0 {
		return VTEPState{}, errNoAddress
	}
	ip, ok := addrOf(addrs[0].IP)
	if !ok {
		return VTEPState{}, fmt.Errorf("unreadable address %v", addrs[0].IP)
	}
	a := link.Attrs()
	return VTEPState{Index: a.Index, HardwareAddr: a.HardwareAddr, IP: ip, MTU: a.MTU}, nil
}

// DeleteVTEP deletes the named link.
func DeleteVTEP(h Links, name string) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find link %s: %w", name, err)
	}
	if err := h.LinkDel(link); err != nil {
		return fmt.Errorf("delete link %s: %w", name, err)
	}
	return nil
}

// isLinkNotFound reports netlink's "Link not found".
func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf)
}
