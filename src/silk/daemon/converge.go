package daemon

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/netlinkx"
	"github.com/netman-release/netman/src/silk/lease"
)

// KernelReader lists what is on the VTEP (System implements it).
type KernelReader interface {
	// ListRoutes calls fn with every main-table route of family
	// (AF_INET, AF_INET6) whose output device is link.
	ListRoutes(link, family int, fn func(Route)) error
	// ListNeighbors calls fn with every neighbour of family (AF_INET:
	// ARP, AF_INET6: NDP, AF_BRIDGE: FDB) on link; mac is only valid
	// during the call.
	ListNeighbors(link, family int, fn func(ip netip.Addr, mac net.HardwareAddr, state int)) error
}

// KernelWriter is every write the converger makes; wrap it to count or
// observe them.
type KernelWriter interface {
	RouteReplace(*netlink.Route) error
	RouteDel(*netlink.Route) error
	NeighSet(*netlink.Neigh) error
	NeighDel(*netlink.Neigh) error
}

// Kernel is what the converger reads and writes (System satisfies it).
type Kernel interface {
	KernelReader
	KernelWriter
}

// Converger makes the VTEP's routes and neighbours match the leases.
type Converger struct {
	Kernel    Kernel
	LinkIndex int
	Planner   Planner

	lastSizes [3]int // routes, ARP, FDB at the last snapshot: sizes the next
}

// families are the address families the converger reads: IPv6 too only on
// a dual-stack cell, so an IPv4-only cell makes the dumps it always made.
func (c *Converger) families() []int {
	if c.Planner.IPv6.Enabled() {
		return []int{unix.AF_INET, unix.AF_INET6}
	}
	return []int{unix.AF_INET}
}

// ConvergeResult reports one converge.
type ConvergeResult struct {
	Stats PlanStats
	// Entries are the routes (both families), ARP, IPv6 neighbour (NDP)
	// and FDB entries desired.
	Routes, ARP, NDP, FDB int
	// Writes is how many netlink writes were issued, successful or not.
	Writes int
}

// Converge plans, reads the VTEP, and writes only the difference. Every
// write is attempted even when one fails; the failures are joined. A delete
// of something already gone (ENOENT, ESRCH) counts as done.
func (c *Converger) Converge(leases []lease.Lease) (ConvergeResult, error) {
	want, stats := c.Planner.Plan(leases)
	res := ConvergeResult{Stats: stats, Routes: len(want.Routes), FDB: len(want.FDB)}
	res.ARP, res.NDP = want.Neighbours()
	cur, err := c.Current()
	if err != nil {
		return res, err
	}
	ch := Diff(cur, want)
	res.Writes = ch.Len()
	return res, c.apply(ch)
}

// Current reads what silk-daemon owns on the VTEP. A dump the kernel
// interrupted because the table changed under it may have missed entries; it
// is repeated.
func (c *Converger) Current() (Current, error) {
	cur := Current{
		Routes: make([]Route, 0, c.lastSizes[0]+8),
		ARP:    make([]ARP, 0, c.lastSizes[1]+8),
		FDB:    make([]FDB, 0, c.lastSizes[2]+8),
	}
	defer func() { c.lastSizes = [3]int{len(cur.Routes), len(cur.ARP), len(cur.FDB)} }()
	for _, family := range c.families() {
		n := len(cur.Routes)
		err := netlinkx.Retry(func() error {
			cur.Routes = cur.Routes[:n]
			return c.Kernel.ListRoutes(c.LinkIndex, family, func(r Route) {
				if c.owned(r) {
					cur.Routes = append(cur.Routes, r)
				}
			})
		})
		if err != nil {
			return cur, fmt.Errorf("list routes: %w", err)
		}
	}
	for _, family := range c.families() {
		n := len(cur.ARP)
		err := netlinkx.Retry(func() error {
			cur.ARP = cur.ARP[:n]
			return c.Kernel.ListNeighbors(c.LinkIndex, family, func(ip netip.Addr, mac net.HardwareAddr, state int) {
				// Multicast entries are the kernel's own mapping (IPv6's
				// MLD reports make one as soon as the VTEP has IPv6); a
				// delete would only be undone by the next report.
				if ip.IsValid() && !ip.IsMulticast() {
					cur.ARP = append(cur.ARP, ARP{IP: ip, MAC: macString(mac), State: state})
				}
			})
		})
		if err != nil {
			if family == unix.AF_INET6 {
				return cur, fmt.Errorf("list ipv6 neighbours: %w", err)
			}
			return cur, fmt.Errorf("list arp: %w", err)
		}
	}
	err := netlinkx.Retry(func() error {
		cur.FDB = cur.FDB[:0]
		return c.Kernel.ListNeighbors(c.LinkIndex, unix.AF_BRIDGE, func(ip netip.Addr, mac net.HardwareAddr, state int) {
			// ip is the zero Addr for an entry without a remote.
			cur.FDB = append(cur.FDB, FDB{MAC: macString(mac), Dst: ip, State: state})
		})
	})
	if err != nil {
		return cur, fmt.Errorf("list fdb: %w", err)
	}
	return cur, nil
}

// owned keeps routes whose gateway is in the overlay network (or the IPv6
// overlay); the kernel's connected overlay routes have none.
func (c *Converger) owned(r Route) bool {
	return r.Gw.IsValid() && r.Dst.IsValid() && (c.Planner.Overlay.Contains(r.Gw) || c.Planner.IPv6.Contains(r.Gw))
}

// apply adds before it deletes, and within adds writes FDB, ARP, then the
// route, so a new route finds its neighbour ready.
func (c *Converger) apply(ch Changes) error {
	var errs []error
	fail := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", what, err))
		}
	}
	for _, f := range ch.FDBSets {
		fail("set fdb "+f.MAC+" dst "+f.Dst.String(), c.Kernel.NeighSet(c.fdbNeigh(f)))
	}
	for _, a := range ch.ARPSets {
		fail("set "+neighKind(a.IP)+" "+a.IP.String(), c.Kernel.NeighSet(c.arpNeigh(a)))
	}
	for _, r := range ch.RouteReplaces {
		fail("replace route "+r.Dst.String(), c.Kernel.RouteReplace(c.netlinkRoute(r)))
	}
	for _, r := range ch.RouteDeletes {
		fail("del route "+r.Dst.String(), ignoreGone(c.Kernel.RouteDel(c.netlinkRoute(r))))
	}
	for _, a := range ch.ARPDeletes {
		fail("del "+neighKind(a.IP)+" "+a.IP.String(), ignoreGone(c.Kernel.NeighDel(c.arpNeigh(a))))
	}
	for _, f := range ch.FDBDeletes {
		fail("del fdb "+f.MAC, ignoreGone(c.Kernel.NeighDel(c.fdbNeigh(f))))
	}
	return errors.Join(errs...)
}

func (c *Converger) netlinkRoute(r Route) *netlink.Route {
	nr := &netlink.Route{
		LinkIndex: c.LinkIndex,
		Dst:       &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Gw:        r.Gw.AsSlice(),
		Scope:     netlink.Scope(r.Scope),
		Priority:  r.Priority,
		Tos:       r.Tos,
		Table:     unix.RT_TABLE_MAIN,
	}
	if r.Src.IsValid() {
		nr.Src = r.Src.AsSlice()
	}
	if r.OnLink {
		nr.Flags = unix.RTNH_F_ONLINK
	}
	return nr
}

// neighKind names a neighbour in errors: "arp", or "neigh" for IPv6.
func neighKind(ip netip.Addr) string {
	if ip.Is6() {
		return "neigh"
	}
	return "arp"
}

func (c *Converger) arpNeigh(a ARP) *netlink.Neigh {
	family := netlink.FAMILY_V4
	if a.IP.Is6() {
		family = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{
		LinkIndex: c.LinkIndex,
		Family:    family,
		State:     a.State,
		Type:      unix.RTN_UNICAST,
		IP:        a.IP.AsSlice(),
	}
	if mac, err := net.ParseMAC(a.MAC); err == nil {
		n.HardwareAddr = mac
	}
	return n
}

func (c *Converger) fdbNeigh(f FDB) *netlink.Neigh {
	n := &netlink.Neigh{
		LinkIndex: c.LinkIndex,
		Family:    unix.AF_BRIDGE,
		Flags:     netlink.NTF_SELF,
		State:     f.State,
	}
	if f.Dst.IsValid() {
		n.IP = f.Dst.AsSlice()
	}
	if mac, err := net.ParseMAC(f.MAC); err == nil {
		n.HardwareAddr = mac
	}
	return n
}

// ignoreGone treats a delete of something the kernel no longer has as done:
// it raced with the kernel or another writer.
func ignoreGone(err error) error {
	if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func addrOf(ip net.IP) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func macString(hw net.HardwareAddr) string {
	if len(hw) == 0 {
		return ""
	}
	return hw.String()
}
