package daemon

import (
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel behaves like the kernel's tables for one namespace, as far as
// the converger uses them: main-table IPv4 routes keyed by destination,
// priority and tos; IPv4 neighbours keyed by device and IP; VXLAN FDB entries
// keyed by device and MAC, each with a list of remotes, where a set replaces
// the first remote and a delete removes one. Deletes of what is not there
// fail with ESRCH (routes) or ENOENT (neighbours), as the kernel's do.
type fakeKernel struct {
	mu     sync.Mutex
	routes map[routeID]netlink.Route
	arp    map[arpID]netlink.Neigh
	fdb    map[fdbID][]netlink.Neigh
	writes int
	fail   map[string]error // by operation name: make it fail
	// interrupt counts, by dump name ("ListRoutes", "ListNeighbors"), the
	// dumps still to end in ErrDumpInterrupted after streaming everything,
	// as a kernel whose table changed during the dump does.
	interrupt map[string]int
}

type routeID struct {
	dst      netip.Prefix
	priority int
	tos      int
}
type arpID struct {
	link int
	ip   netip.Addr
}
type fdbID struct {
	link int
	mac  string
}

func newFakeKernel() *fakeKernel {
	return &fakeKernel{
		routes: map[routeID]netlink.Route{},
		arp:    map[arpID]netlink.Neigh{},
		fdb:    map[fdbID][]netlink.Neigh{},
		fail:   map[string]error{},

		interrupt: map[string]int{},
	}
}

// interrupted uses up one of op's interruptions.
func (k *fakeKernel) interrupted(op string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.interrupt[op] == 0 {
		return nil
	}
	k.interrupt[op]--
	return netlink.ErrDumpInterrupted
}

func (k *fakeKernel) ListRoutes(link int, fn func(Route)) error {
	k.mu.Lock()
	var routes []netlink.Route
	for _, r := range k.routes {
		if r.LinkIndex == link {
			routes = append(routes, r)
		}
	}
	k.mu.Unlock()
	for _, r := range routes {
		dst, _ := prefixOf(r.Dst)
		gw, _ := addrOf(r.Gw)
		src, _ := addrOf(r.Src)
		fn(Route{
			Dst: dst, Gw: gw, Src: src, OnLink: r.Flags&unix.RTNH_F_ONLINK != 0,
			Scope: uint8(r.Scope), Priority: r.Priority, Tos: r.Tos,
		})
	}
	return k.interrupted("ListRoutes")
}

func (k *fakeKernel) ListNeighbors(link, family int, fn func(netip.Addr, net.HardwareAddr, int)) error {
	for _, n := range k.neighList(link, family) {
		ip, _ := addrOf(n.IP)
		fn(ip, n.HardwareAddr, n.State)
	}
	return k.interrupted("ListNeighbors")
}

func (k *fakeKernel) neighList(link, family int) []netlink.Neigh {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Neigh
	switch family {
	case netlink.FAMILY_V4:
		for id, n := range k.arp {
			if id.link == link {
				out = append(out, n)
			}
		}
	case unix.AF_BRIDGE:
		for id, ns := range k.fdb {
			if id.link == link {
				out = append(out, ns...)
			}
		}
	}
	return out
}

func (k *fakeKernel) RouteReplace(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	if err := k.fail["RouteReplace"]; err != nil {
		return err
	}
	stored := *r
	stored.Table = unix.RT_TABLE_MAIN
	k.routes[routeKey(r)] = stored
	return nil
}

func (k *fakeKernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	id := routeKey(r)
	have, ok := k.routes[id]
	if !ok || (r.Gw != nil && !have.Gw.Equal(r.Gw)) || (r.LinkIndex != 0 && have.LinkIndex != r.LinkIndex) {
		return syscall.ESRCH
	}
	delete(k.routes, id)
	return nil
}

func (k *fakeKernel) NeighSet(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	if err := k.fail["NeighSet"]; err != nil {
		return err
	}
	stored := *n
	if n.Family == unix.AF_BRIDGE {
		id := fdbID{n.LinkIndex, n.HardwareAddr.String()}
		if remotes := k.fdb[id]; len(remotes) > 0 {
			remotes[0] = stored
			return nil
		}
		k.fdb[id] = []netlink.Neigh{stored}
		return nil
	}
	ip, _ := addrOf(n.IP)
	k.arp[arpID{n.LinkIndex, ip}] = stored
	return nil
}

func (k *fakeKernel) NeighDel(n *netlink.Neigh) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	if n.Family == unix.AF_BRIDGE {
		id := fdbID{n.LinkIndex, n.HardwareAddr.String()}
		remotes := k.fdb[id]
		for i, r := range remotes {
			if r.IP.Equal(n.IP) {
				remotes = append(remotes[:i], remotes[i+1:]...)
				if len(remotes) == 0 {
					delete(k.fdb, id)
				} else {
					k.fdb[id] = remotes
				}
				return nil
			}
		}
		return syscall.ENOENT
	}
	ip, _ := addrOf(n.IP)
	id := arpID{n.LinkIndex, ip}
	if _, ok := k.arp[id]; !ok {
		return syscall.ENOENT
	}
	delete(k.arp, id)
	return nil
}

func (k *fakeKernel) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

func routeKey(r *netlink.Route) routeID {
	p, _ := prefixOf(r.Dst)
	return routeID{dst: p.Masked(), priority: r.Priority, tos: r.Tos}
}

// connected adds the kernel's connected route for the VTEP address.
func (k *fakeKernel) connected(link int, p netip.Prefix) {
	k.routes[routeID{dst: p.Masked()}] = netlink.Route{
		LinkIndex: link, Dst: ipNet(p.Masked()), Src: p.Addr().AsSlice(),
		Scope: netlink.SCOPE_LINK, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_KERNEL,
	}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

// countingKernel counts the writes made through it to a real kernel.
type countingKernel struct {
	Kernel
	mu     sync.Mutex
	writes int
}

func (c *countingKernel) count() {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
}

func (c *countingKernel) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func (c *countingKernel) RouteReplace(r *netlink.Route) error {
	c.count()
	return c.Kernel.RouteReplace(r)
}
func (c *countingKernel) RouteDel(r *netlink.Route) error { c.count(); return c.Kernel.RouteDel(r) }
func (c *countingKernel) NeighSet(n *netlink.Neigh) error { c.count(); return c.Kernel.NeighSet(n) }
func (c *countingKernel) NeighDel(n *netlink.Neigh) error { c.count(); return c.Kernel.NeighDel(n) }

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := addrOf(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, size := n.Mask.Size()
	if size == 0 {
		return netip.Prefix{}, false
	}
	if a.Is4() && size == 128 {
		bits -= 96
	}
	return netip.PrefixFrom(a, bits), true
}
