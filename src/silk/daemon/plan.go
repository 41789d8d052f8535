package daemon

import (
	"net"
	"net/netip"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Route is a route on the VTEP in the main table, in the fields that
// identify it to the kernel and that silk-daemon cares about. Desired IPv4
// routes have Scope universe (0), Priority 0 and Tos 0; desired IPv6 routes
// have Priority ipv6RouteMetric, the metric the kernel gives an IPv6 route
// written without one (so what is read back equals what was planned).
type Route struct {
	Dst      netip.Prefix
	Gw       netip.Addr
	Src      netip.Addr
	OnLink   bool
	Scope    uint8
	Priority int
	Tos      int
}

// ARP is a neighbour on the VTEP: an IPv4 ARP entry or, on a dual-stack
// cell, an IPv6 neighbour (NDP) entry. Desired entries are permanent.
type ARP struct {
	IP    netip.Addr
	MAC   string // net.HardwareAddr.String(); "" when the kernel has none
	State int
}

// FDB is a forwarding entry of the VTEP itself (NTF_SELF): frames for MAC go
// to the remote VTEP at Dst. Desired entries are permanent.
type FDB struct {
	MAC   string
	Dst   netip.Addr
	State int
}

// nudPermanent is NUD_PERMANENT, the state of every entry silk-daemon writes.
const nudPermanent = 0x80

// ipv6RouteMetric is the metric (priority) the kernel gives an IPv6 route
// added without one (IP6_RT_PRIO_USER).
const ipv6RouteMetric = 1024

// Desired is what should exist on the VTEP for a set of leases: per remote
// block lease a route, and per remote lease an ARP and an FDB entry; on a
// dual-stack cell also per remote lease an IPv6 route and an IPv6 neighbour
// (in the same maps: the keys of the two families never collide).
type Desired struct {
	Routes map[netip.Prefix]Route // by destination
	ARP    map[netip.Addr]ARP     // by neighbour IP (IPv4 and IPv6)
	FDB    map[string]FDB         // by MAC
}

// Neighbours counts the desired IPv4 (ARP) and IPv6 (NDP) neighbours.
func (d Desired) Neighbours() (arp, ndp int) {
	for ip := range d.ARP {
		if ip.Is4() {
			arp++
		} else {
			ndp++
		}
	}
	return arp, ndp
}

// PlanStats counts the leases the planner left out.
type PlanStats struct {
	// NonRoutable leases lie outside the overlay network (upstream's
	// "non-routable-lease-count").
	NonRoutable int
	// Invalid leases do not parse, or collide with the local lease or an
	// earlier lease; upstream failed the whole converge on a malformed one.
	Invalid int
}

// Planner computes the desired VTEP state for a cell.
type Planner struct {
	// Local is the cell's own lease subnet, masked; leases for it are
	// skipped and its first address is every route's source.
	Local netip.Prefix
	// Overlay is the overlay network; only leases inside it are routed.
	Overlay netip.Prefix
	// OnLink marks routes onlink, as upstream does on single_ip_only VMs.
	OnLink bool
	// IPv6 is the deployment's IPv6 overlay network on a dual-stack cell;
	// the zero Network (IPv4 only) plans exactly what it planned before.
	IPv6 overlay6.Network
}

// Plan is pure: the same leases give the same Desired state. For a remote
// lease with subnet S, first address R, MAC M and underlay IP U:
//
//	route  S via R dev <vtep> src <Local's first address>   (block leases only)
//	ARP    R lladdr M nud permanent
//	FDB    M dst U self permanent
//
// Single-IP (/32) leases get no route: R is on-link through the kernel's
// connected overlay route.
//
// On a dual-stack cell (IPv6 set), with S6 and R6 the lease mapped into the
// IPv6 overlay (overlay6.Prefix6, overlay6.Addr), also:
//
//	route  S6 via R6 dev <vtep> onlink metric 1024   (/120, or /128 for a single-IP lease)
//	neigh  R6 lladdr M nud permanent
//
// The FDB entry is shared: both families reach the remote VTEP's MAC. The
// VTEP's own IPv6 address is a /120 (or /128), so every remote gateway is
// off-link and every IPv6 route, single-IP leases' too, is onlink.
func (p Planner) Plan(leases []lease.Lease) (Desired, PlanStats) {
	d := Desired{
		Routes: make(map[netip.Prefix]Route, len(leases)),
		ARP:    make(map[netip.Addr]ARP, len(leases)),
		FDB:    make(map[string]FDB, len(leases)),
	}
	var stats PlanStats
	src := p.Local.Masked().Addr()
	for _, l := range leases {
		subnet, err := netip.ParsePrefix(l.OverlaySubnet)
		if err != nil || !subnet.Addr().Is4() {
			stats.Invalid++
			continue
		}
		dst := subnet.Masked()
		if dst == p.Local {
			continue
		}
		if !p.Overlay.Contains(dst.Addr()) || dst.Bits() < p.Overlay.Bits() {
			stats.NonRoutable++
			continue
		}
		gw := subnet.Addr() // the lease's first address, as written
		underlay, err := netip.ParseAddr(l.UnderlayIP)
		mac, macErr := net.ParseMAC(l.OverlayHardwareAddr)
		if err != nil || !underlay.Is4() || macErr != nil || len(mac) != 6 {
			stats.Invalid++
			continue
		}
		m := mac.String()
		single := dst.Bits() == 32
		_, dupRoute := d.Routes[dst]
		_, dupARP := d.ARP[gw]
		_, dupFDB := d.FDB[m]
		if dst.Overlaps(p.Local) || (!single && dupRoute) || dupARP || dupFDB {
			stats.Invalid++
			continue
		}
		if !single {
			d.Routes[dst] = Route{Dst: dst, Gw: gw, Src: src, OnLink: p.OnLink}
		}
		d.ARP[gw] = ARP{IP: gw, MAC: m, State: nudPermanent}
		d.FDB[m] = FDB{MAC: m, Dst: underlay, State: nudPermanent}
		if p.IPv6.Enabled() {
			gw6 := p.IPv6.Addr(gw)
			dst6 := p.IPv6.Prefix6(dst)
			d.Routes[dst6] = Route{Dst: dst6, Gw: gw6, OnLink: true, Priority: ipv6RouteMetric}
			d.ARP[gw6] = ARP{IP: gw6, MAC: m, State: nudPermanent}
		}
	}
	return d, stats
}

// Current is what the kernel holds on the VTEP, as far as silk-daemon owns
// it: routes whose gateway lies inside the overlay network (never the
// kernel's connected route), and every ARP and FDB entry on the device; on a
// dual-stack cell also the IPv6 routes whose gateway lies inside the IPv6
// overlay and every IPv6 neighbour on the device.
type Current struct {
	Routes []Route
	ARP    []ARP
	FDB    []FDB
}

// Changes are the writes that turn Current into Desired. Sets and replaces
// overwrite an entry with the same kernel identity, so an entry that merely
// changed is written once and never also deleted.
type Changes struct {
	RouteReplaces []Route
	RouteDeletes  []Route
	ARPSets       []ARP
	ARPDeletes    []ARP
	FDBSets       []FDB
	FDBDeletes    []FDB
}

// Len is the number of netlink writes the changes take.
func (c Changes) Len() int {
	return len(c.RouteReplaces) + len(c.RouteDeletes) + len(c.ARPSets) + len(c.ARPDeletes) + len(c.FDBSets) + len(c.FDBDeletes)
}

// Diff compares what exists with what should. It is pure; the result is in
// no particular order.
func Diff(cur Current, want Desired) Changes {
	var ch Changes

	// Routes: a replace overwrites the route with the same destination,
	// priority and tos in the main table; anything else must be deleted.
	routeOK := make(map[netip.Prefix]bool, len(want.Routes))
	for _, r := range cur.Routes {
		d, ok := want.Routes[r.Dst]
		switch {
		case ok && r == d && !routeOK[r.Dst]:
			routeOK[r.Dst] = true
		case ok && r.Priority == d.Priority && r.Tos == d.Tos:
			// overwritten by the replace below
		default:
			ch.RouteDeletes = append(ch.RouteDeletes, r)
		}
	}
	for dst, d := range want.Routes {
		if !routeOK[dst] {
			ch.RouteReplaces = append(ch.RouteReplaces, d)
		}
	}

	// ARP: one entry per IP on a device; a set overwrites it.
	arpOK := make(map[netip.Addr]bool, len(want.ARP))
	for _, a := range cur.ARP {
		d, ok := want.ARP[a.IP]
		switch {
		case !ok:
			ch.ARPDeletes = append(ch.ARPDeletes, a)
		case a == d:
			arpOK[a.IP] = true
		}
	}
	for ip, d := range want.ARP {
		if !arpOK[ip] {
			ch.ARPSets = append(ch.ARPSets, d)
		}
	}

	// FDB: a VXLAN MAC may have several remotes. A set (NLM_F_REPLACE)
	// rewrites the first one, so a MAC whose only remote is wrong takes one
	// set; among several, the wrong ones are deleted and the right one set
	// if missing.
	type macState struct {
		remotes int
		right   bool // the desired remote is there
	}
	macs := make(map[string]macState, len(cur.FDB))
	for _, f := range cur.FDB {
		st := macs[f.MAC]
		st.remotes++
		if d, ok := want.FDB[f.MAC]; ok && f == d {
			st.right = true
		}
		macs[f.MAC] = st
	}
	for _, f := range cur.FDB {
		d, wanted := want.FDB[f.MAC]
		if !wanted || (f != d && macs[f.MAC].remotes > 1) {
			ch.FDBDeletes = append(ch.FDBDeletes, f)
		}
	}
	for mac, d := range want.FDB {
		if !macs[mac].right {
			ch.FDBSets = append(ch.FDBSets, d)
		}
	}
	return ch
}
