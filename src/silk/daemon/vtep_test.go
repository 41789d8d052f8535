package daemon

import (
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/silk/lease"
)

func testVTEPConfig(cell *testCell) Config {
	return Config{
		UnderlayIP: cell.underlayIP, SubnetPrefixLength: 24, OverlayNetwork: OverlayNetwork{"10.255.0.0/16"},
		VTEPName: "silk-vtep", VNI: 1, VTEPPort: 4789,
	}
}

func createTestVTEP(t *testing.T, cell *testCell, cfg Config, l lease.Lease) *netlink.Vxlan {
	t.Helper()
	spec, err := vtepSpec(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	if err := CreateVTEP(cell.nl, spec); err != nil {
		t.Fatal(err)
	}
	link, err := cell.nl.LinkByName(cfg.VTEPName)
	if err != nil {
		t.Fatal(err)
	}
	return link.(*netlink.Vxlan)
}

func TestCreateVTEP(t *testing.T) {
	cell := newTestCell(t)
	vx := createTestVTEP(t, cell, testVTEPConfig(cell), cell17())
	parent, err := cell.nl.LinkByName(cell.underlay)
	if err != nil {
		t.Fatal(err)
	}

	checks := []struct {
		what      string
		got, want any
	}{
		{"VNI", vx.VxlanId, 1},
		{"dstport", vx.Port, 4789},
		{"GBP", vx.GBP, true},
		{"learning", vx.Learning, false},
		{"proxy", vx.Proxy, false},
		{"l2miss", vx.L2miss, false},
		{"l3miss", vx.L3miss, false},
		{"ttl", vx.TTL, 0},
		{"tos", vx.TOS, 0},
		{"local", vx.SrcAddr.String(), "10.244.0.1"},
		{"parent", vx.VtepDevIndex, parent.Attrs().Index},
		{"MTU (underlay 1500 - 50)", vx.MTU, 1450},
		{"hwaddr", vx.HardwareAddr.String(), "ee:ee:0a:ff:11:00"},
		{"up", vx.Flags&(1<<0) != 0, true},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
		}
	}
	addrs, err := cell.nl.AddrList(vx, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 {
		t.Fatalf("addresses %v, %v", addrs, err)
	}
	if addrs[0].IPNet.String() != "10.255.17.0/16" || addrs[0].Scope != unix.RT_SCOPE_LINK {
		t.Errorf("address %s scope %d, want 10.255.17.0/16 scope link", addrs[0].IPNet, addrs[0].Scope)
	}
	// The same as iproute2 reports it.
	out := cell.ns.Run(t, "ip", "-d", "link", "show", "silk-vtep")
	for _, want := range []string{"vxlan id 1 ", "local 10.244.0.1 dev " + cell.underlay, "dstport 4789", "nolearning", "gbp", "mtu 1450"} {
		if !strings.Contains(out, want) {
			t.Errorf("ip -d link lacks %q:\n%s", want, out)
		}
	}

	state, err := ReadVTEP(cell.nl, "silk-vtep")
	if err != nil {
		t.Fatal(err)
	}
	if state.IP != netip.MustParseAddr("10.255.17.0") || state.MTU != 1450 || state.HardwareAddr.String() != "ee:ee:0a:ff:11:00" || state.Index != vx.Index {
		t.Errorf("ReadVTEP = %+v", state)
	}
}

func cell17() lease.Lease {
	l := remote(17)
	l.UnderlayIP = "10.244.0.1"
	return l
}

func TestCreateVTEPOptions(t *testing.T) {
	cell := newTestCell(t)

	t.Run("configured MTU and named parent", func(t *testing.T) {
		cfg := testVTEPConfig(cell)
		cfg.MTU = 1350
		cfg.VxlanInterfaceName = cell.underlay
		vx := createTestVTEP(t, cell, cfg, cell17())
		defer DeleteVTEP(cell.nl, "silk-vtep")
		if vx.MTU != 1350 {
			t.Errorf("MTU = %d, want 1350", vx.MTU)
		}
	})

	t.Run("no interface holds the underlay IP", func(t *testing.T) {
		cfg := testVTEPConfig(cell)
		cfg.UnderlayIP = "10.244.9.9"
		spec, _ := vtepSpec(cfg, cell17())
		err := CreateVTEP(cell.nl, spec)
		if err == nil || !strings.Contains(err.Error(), "find device from ip 10.244.9.9: no interface with address 10.244.9.9") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("unknown parent name", func(t *testing.T) {
		cfg := testVTEPConfig(cell)
		cfg.VxlanInterfaceName = "non-existent-eth1"
		spec, _ := vtepSpec(cfg, cell17())
		if err := CreateVTEP(cell.nl, spec); err == nil || !strings.Contains(err.Error(), "find device from name non-existent-eth1") {
			t.Fatalf("err = %v", err)
		}
	})

	t.Run("a failure after the link exists removes it", func(t *testing.T) {
		spec, _ := vtepSpec(testVTEPConfig(cell), cell17())
		err := CreateVTEP(failingAddr{cell.nl}, spec)
		if err == nil || !strings.Contains(err.Error(), "add address: ") {
			t.Fatalf("err = %v", err)
		}
		if _, lerr := cell.nl.LinkByName("silk-vtep"); !isLinkNotFound(lerr) {
			t.Errorf("after %v the link is still there (%v)", err, lerr)
		}
	})
}

// failingAddr fails address additions on an otherwise real handle.
type failingAddr struct{ *System }

func (failingAddr) AddrAdd(netlink.Link, *netlink.Addr) error { return unix.EADDRNOTAVAIL }

// kernelView is the VTEP's tables as iproute2 prints them, one line per
// entry, sorted.
type kernelView struct{ routes, arp, fdb []string }

func viewVTEP(t *testing.T, cell *testCell) kernelView {
	t.Helper()
	lines := func(out string) []string {
		var l []string
		for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
			if s = strings.TrimSpace(s); s != "" {
				l = append(l, s)
			}
		}
		sort.Strings(l)
		return l
	}
	return kernelView{
		routes: lines(cell.ns.Run(t, "ip", "-4", "route", "show", "dev", "silk-vtep")),
		arp:    lines(cell.ns.Run(t, "ip", "-4", "neigh", "show", "dev", "silk-vtep")),
		fdb:    lines(cell.ns.Run(t, "bridge", "fdb", "show", "dev", "silk-vtep")),
	}
}

func TestConvergeOnTheKernel(t *testing.T) {
	cell := newTestCell(t)
	vx := createTestVTEP(t, cell, testVTEPConfig(cell), cell17())
	k := &countingKernel{Kernel: cell.nl}
	c := &Converger{Kernel: k, LinkIndex: vx.Index, Planner: Planner{Local: local17, Overlay: overlay16}}
	leases := []lease.Lease{cell17(), remote(18), remote(19), single("10.255.0.9", "10.244.1.9")}

	res, err := c.Converge(leases)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 8 || k.Writes() != 8 {
		t.Fatalf("first converge: %d writes reported, %d made; want 8", res.Writes, k.Writes())
	}
	got := viewVTEP(t, cell)
	wantRoutes := []string{
		"10.255.0.0/16 proto kernel scope link src 10.255.17.0",
		"10.255.18.0/24 via 10.255.18.0 src 10.255.17.0",
		"10.255.19.0/24 via 10.255.19.0 src 10.255.17.0",
	}
	wantARP := []string{
		"10.255.0.9 lladdr ee:ee:0a:ff:00:09 PERMANENT",
		"10.255.18.0 lladdr ee:ee:0a:ff:12:00 PERMANENT",
		"10.255.19.0 lladdr ee:ee:0a:ff:13:00 PERMANENT",
	}
	wantFDB := []string{
		"ee:ee:0a:ff:00:09 dst 10.244.1.9 self permanent",
		"ee:ee:0a:ff:12:00 dst 10.244.0.18 self permanent",
		"ee:ee:0a:ff:13:00 dst 10.244.0.19 self permanent",
	}
	check := func(what string, got, want []string) {
		t.Helper()
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s:\n got  %q\n want %q", what, got, want)
		}
	}
	check("routes", got.routes, wantRoutes)
	check("arp", got.arp, wantARP)
	check("fdb", got.fdb, wantFDB)

	before := k.Writes()
	if res, err := c.Converge(leases); err != nil || res.Writes != 0 || k.Writes() != before {
		t.Fatalf("second converge with the same leases: %+v, %v, %d writes; want none", res, err, k.Writes()-before)
	}

	// One cell leaves: exactly its three entries go, nothing else is written.
	before = k.Writes()
	if _, err := c.Converge([]lease.Lease{cell17(), remote(18), single("10.255.0.9", "10.244.1.9")}); err != nil {
		t.Fatal(err)
	}
	if n := k.Writes() - before; n != 3 {
		t.Errorf("removing one lease took %d writes, want 3", n)
	}
	got = viewVTEP(t, cell)
	check("routes after removal", got.routes, []string{wantRoutes[0], wantRoutes[1]})
	check("arp after removal", got.arp, wantARP[:2])
	check("fdb after removal", got.fdb, wantFDB[:2])

	// Drift is repaired with one write per drifted entry.
	cell.ns.Run(t, "ip", "neigh", "del", "10.255.18.0", "dev", "silk-vtep")
	cell.ns.Run(t, "ip", "route", "add", "10.255.99.0/24", "via", "10.255.99.0", "dev", "silk-vtep")
	before = k.Writes()
	if _, err := c.Converge([]lease.Lease{cell17(), remote(18), single("10.255.0.9", "10.244.1.9")}); err != nil {
		t.Fatal(err)
	}
	if n := k.Writes() - before; n != 2 {
		t.Errorf("repairing two drifted entries took %d writes, want 2", n)
	}
	got = viewVTEP(t, cell)
	check("routes after repair", got.routes, []string{wantRoutes[0], wantRoutes[1]})
	check("arp after repair", got.arp, wantARP[:2])

	// With no leases only the kernel's connected route remains.
	if _, err := c.Converge(nil); err != nil {
		t.Fatal(err)
	}
	got = viewVTEP(t, cell)
	check("routes with no leases", got.routes, wantRoutes[:1])
	if len(got.arp) != 0 || len(got.fdb) != 0 {
		t.Errorf("neighbours left: %q %q", got.arp, got.fdb)
	}
}

func TestConvergeMovedCellRewritesOneFDBEntry(t *testing.T) {
	cell := newTestCell(t)
	vx := createTestVTEP(t, cell, testVTEPConfig(cell), cell17())
	k := &countingKernel{Kernel: cell.nl}
	c := &Converger{Kernel: k, LinkIndex: vx.Index, Planner: Planner{Local: local17, Overlay: overlay16}}
	if _, err := c.Converge([]lease.Lease{remote(18)}); err != nil {
		t.Fatal(err)
	}
	moved := remote(18)
	moved.UnderlayIP = "10.244.0.99"
	before := k.Writes()
	if _, err := c.Converge([]lease.Lease{moved}); err != nil {
		t.Fatal(err)
	}
	if n := k.Writes() - before; n != 1 {
		t.Errorf("moving a cell took %d writes, want 1", n)
	}
	fdb := viewVTEP(t, cell).fdb
	if len(fdb) != 1 || fdb[0] != "ee:ee:0a:ff:12:00 dst 10.244.0.99 self permanent" {
		t.Errorf("fdb = %q", fdb)
	}
	if res, _ := c.Converge([]lease.Lease{moved}); res.Writes != 0 {
		t.Errorf("converge after the move wrote %d times", res.Writes)
	}
}

func TestSingleIPDaemonRoutesOnLink(t *testing.T) {
	cell := newTestCell(t)
	own := single("10.255.0.5", "10.244.0.1")
	vx := createTestVTEP(t, cell, testVTEPConfig(cell), own)
	c := &Converger{Kernel: cell.nl, LinkIndex: vx.Index, Planner: Planner{Local: prefix("10.255.0.5/32"), Overlay: overlay16, OnLink: true}}
	if _, err := c.Converge([]lease.Lease{own, remote(20)}); err != nil {
		t.Fatal(err)
	}
	routes := viewVTEP(t, cell).routes
	want := "10.255.20.0/24 via 10.255.20.0 src 10.255.0.5 onlink"
	found := false
	for _, r := range routes {
		found = found || r == want
	}
	if !found {
		t.Errorf("routes %q lack %q", routes, want)
	}
	if res, err := c.Converge([]lease.Lease{own, remote(20)}); err != nil || res.Writes != 0 {
		t.Errorf("second converge: %+v, %v", res, err)
	}
}
