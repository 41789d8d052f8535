package daemon

import (
	"maps"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// FakeKernel behaves like the kernel's tables for one namespace, as far as
// the converger uses them: main-table routes of both families keyed by
// destination, priority and tos, where an IPv6 route written without a
// priority gets metric 1024, as the kernel gives it; IPv4 and IPv6
// neighbours keyed by device and IP; VXLAN FDB entries
// keyed by device and MAC, each with a list of remotes, where a set replaces
// the first remote and a delete removes one. Deletes of what is not there
// fail with ESRCH (routes) or ENOENT (neighbours), as the kernel's do.
type FakeKernel struct {
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

func NewFakeKernel() *FakeKernel {
	return &FakeKernel{
		routes: map[routeID]netlink.Route{},
		arp:    map[arpID]netlink.Neigh{},
		fdb:    map[fdbID][]netlink.Neigh{},
		fail:   map[string]error{},

		interrupt: map[string]int{},
	}
}

// interrupted uses up one of op's interruptions.
func (k *FakeKernel) interrupted(op string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.interrupt[op] == 0 {
		return nil
	}
	k.interrupt[op]--
	return netlink.ErrDumpInterrupted
}

func (k *FakeKernel) ListRoutes(link, family int, fn func(Route)) error {
	k.mu.Lock()
	var routes []netlink.Route
	for id, r := range k.routes {
		if r.LinkIndex == link && familyOf(id.dst.Addr()) == family {
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

func (k *FakeKernel) ListNeighbors(link, family int, fn func(netip.Addr, net.HardwareAddr, int)) error {
	for _, n := range k.neighList(link, family) {
		ip, _ := addrOf(n.IP)
		fn(ip, n.HardwareAddr, n.State)
	}
	return k.interrupted("ListNeighbors")
}

func (k *FakeKernel) neighList(link, family int) []netlink.Neigh {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []netlink.Neigh
	switch family {
	case netlink.FAMILY_V4, netlink.FAMILY_V6:
		for id, n := range k.arp {
			if id.link == link && familyOf(id.ip) == family {
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

func (k *FakeKernel) RouteReplace(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	if err := k.fail["RouteReplace"]; err != nil {
		return err
	}
	stored := *r
	stored.Table = unix.RT_TABLE_MAIN
	if p, ok := prefixOf(r.Dst); ok && p.Addr().Is6() && stored.Priority == 0 {
		stored.Priority = ipv6RouteMetric
	}
	k.routes[routeKey(&stored)] = stored
	return nil
}

// familyOf is an address's AF_INET or AF_INET6.
func familyOf(a netip.Addr) int {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

func (k *FakeKernel) RouteDel(r *netlink.Route) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes++
	id := routeKey(r)
	if id.dst.Addr().Is6() && id.priority == 0 {
		id.priority = ipv6RouteMetric // the kernel matches any metric; silk always names it
	}
	have, ok := k.routes[id]
	if !ok || (r.Gw != nil && !have.Gw.Equal(r.Gw)) || (r.LinkIndex != 0 && have.LinkIndex != r.LinkIndex) {
		return syscall.ESRCH
	}
	delete(k.routes, id)
	return nil
}

func (k *FakeKernel) NeighSet(n *netlink.Neigh) error {
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

func (k *FakeKernel) NeighDel(n *netlink.Neigh) error {
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

func (k *FakeKernel) Writes() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.writes
}

func routeKey(r *netlink.Route) routeID {
	p, _ := prefixOf(r.Dst)
	return routeID{dst: p.Masked(), priority: r.Priority, tos: r.Tos}
}

// connected adds the kernel's connected route for the VTEP address (an
// IPv6 one with metric 256 and no preferred source, as the kernel's).
func (k *FakeKernel) connected(link int, p netip.Prefix) {
	r := netlink.Route{
		LinkIndex: link, Dst: ipNet(p.Masked()), Src: p.Addr().AsSlice(),
		Scope: netlink.SCOPE_LINK, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_KERNEL,
	}
	if p.Addr().Is6() {
		r.Src, r.Scope, r.Priority = nil, netlink.SCOPE_UNIVERSE, 256
	}
	k.routes[routeKey(&r)] = r
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

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

// Counts are the VTEP's routes, ARP entries and FDB entries on link.
func (k *FakeKernel) Counts(link int) (routes, arp, fdb int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.routes {
		if r.LinkIndex == link {
			routes++
		}
	}
	for id := range k.arp {
		if id.link == link {
			arp++
		}
	}
	for id, rs := range k.fdb {
		if id.link == link {
			fdb += len(rs)
		}
	}
	return routes, arp, fdb
}

// FakeSystem is a FakeKernel with the links start-up uses (Links): one
// underlay device holding the underlay IP, and whatever VXLAN devices are
// created, each with the ethtool features in VTEPOffloads. Adding an
// address adds the kernel's connected route, as the kernel does; deleting a
// link deletes its addresses, routes and neighbours. It lets silk-daemon's
// real start-up and poll cycle run with no namespace (netman-fleet).
type FakeSystem struct {
	*FakeKernel
	lmu      sync.Mutex
	links    map[string]netlink.Link
	addrs    map[int][]netlink.Addr
	features map[string]map[string]bool
	next     int
}

// NewFakeSystem returns a system whose underlay device (index 1) holds
// underlayIP.
func NewFakeSystem(underlayIP netip.Addr) *FakeSystem {
	s := &FakeSystem{
		FakeKernel: NewFakeKernel(),
		links:      map[string]netlink.Link{},
		addrs:      map[int][]netlink.Addr{},
		features:   map[string]map[string]bool{},
		next:       2,
	}
	s.links["eth0"] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 1, MTU: 1500}}
	s.addrs[1] = []netlink.Addr{{IPNet: ipNet(netip.PrefixFrom(underlayIP, 24)), LinkIndex: 1}}
	return s
}

// LinkByName implements Links.
func (s *FakeSystem) LinkByName(name string) (netlink.Link, error) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	if l, ok := s.links[name]; ok {
		return l, nil
	}
	return nil, netlink.LinkNotFoundError{}
}

// LinkAdd implements Links; a VXLAN device's MTU defaults to the
// underlay's minus 50, as the kernel's.
func (s *FakeSystem) LinkAdd(link netlink.Link) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	a := link.Attrs()
	if _, ok := s.links[a.Name]; ok {
		return syscall.EEXIST
	}
	a.Index = s.next
	s.next++
	if a.MTU == 0 {
		a.MTU = 1450
	}
	s.links[a.Name] = link
	f := map[string]bool{}
	for name := range VTEPOffloads {
		f[name] = true
	}
	f["tx-checksum-ip-generic"] = true
	s.features[a.Name] = f
	return nil
}

// LinkDel implements Links.
func (s *FakeSystem) LinkDel(link netlink.Link) error {
	s.lmu.Lock()
	name := link.Attrs().Name
	have, ok := s.links[name]
	if !ok {
		s.lmu.Unlock()
		return netlink.LinkNotFoundError{}
	}
	idx := have.Attrs().Index
	delete(s.links, name)
	delete(s.addrs, idx)
	delete(s.features, name)
	s.lmu.Unlock()

	k := s.FakeKernel
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, r := range k.routes {
		if r.LinkIndex == idx {
			delete(k.routes, id)
		}
	}
	for id := range k.arp {
		if id.link == idx {
			delete(k.arp, id)
		}
	}
	for id := range k.fdb {
		if id.link == idx {
			delete(k.fdb, id)
		}
	}
	return nil
}

// LinkSetUp implements Links.
func (s *FakeSystem) LinkSetUp(link netlink.Link) error {
	_, err := s.LinkByName(link.Attrs().Name)
	return err
}

// AddrAdd implements Links, with the connected route.
func (s *FakeSystem) AddrAdd(link netlink.Link, addr *netlink.Addr) error {
	l, err := s.LinkByName(link.Attrs().Name)
	if err != nil {
		return err
	}
	idx := l.Attrs().Index
	p, ok := prefixOf(addr.IPNet)
	if !ok {
		return syscall.EINVAL
	}
	s.lmu.Lock()
	for _, have := range s.addrs[idx] {
		if have.IP.Equal(addr.IP) {
			s.lmu.Unlock()
			return syscall.EEXIST
		}
	}
	a := *addr
	a.LinkIndex = idx
	s.addrs[idx] = append(s.addrs[idx], a)
	s.lmu.Unlock()
	if p.Addr().Is6() && p.Bits() == 128 {
		return nil // the kernel adds no prefix route for an IPv6 /128
	}
	s.FakeKernel.mu.Lock()
	s.FakeKernel.connected(idx, p)
	s.FakeKernel.mu.Unlock()
	return nil
}

// AddrList implements Links: link's addresses of family (FAMILY_ALL for
// both), or every link's for nil.
func (s *FakeSystem) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	var out []netlink.Addr
	for idx, as := range s.addrs {
		if link != nil && link.Attrs().Index != idx {
			continue
		}
		for _, a := range as {
			if ip, ok := addrOf(a.IP); ok && (family == netlink.FAMILY_ALL || familyOf(ip) == family) {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// Features implements Features.
func (s *FakeSystem) Features(intf string) (map[string]bool, error) {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	f, ok := s.features[intf]
	if !ok {
		return nil, syscall.ENODEV
	}
	return maps.Clone(f), nil
}

// Change implements Features.
func (s *FakeSystem) Change(intf string, config map[string]bool) error {
	s.lmu.Lock()
	defer s.lmu.Unlock()
	f, ok := s.features[intf]
	if !ok {
		return syscall.ENODEV
	}
	maps.Copy(f, config)
	return nil
}
