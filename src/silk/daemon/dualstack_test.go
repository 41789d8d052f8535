package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

var v6net = overlay6.MustParse(overlay6.DefaultNetwork)

// TestPlanDualStack: on a dual-stack cell every remote lease adds one IPv6
// route (onlink, metric 1024) and one permanent IPv6 neighbour on top of
// exactly the IPv4 plan; the FDB entry is shared.
func TestPlanDualStack(t *testing.T) {
	leases := []lease.Lease{remote(17), remote(18), single("10.255.0.9", "10.244.1.9")}
	v4 := Planner{Local: local17, Overlay: overlay16}
	dual := v4
	dual.IPv6 = v6net

	want4, stats4 := v4.Plan(leases)
	got, stats := dual.Plan(leases)
	if stats != stats4 {
		t.Errorf("stats %+v, IPv4-only %+v", stats, stats4)
	}
	want := Desired{Routes: map[netip.Prefix]Route{}, ARP: map[netip.Addr]ARP{}, FDB: want4.FDB}
	for k, v := range want4.Routes {
		want.Routes[k] = v
	}
	for k, v := range want4.ARP {
		want.ARP[k] = v
	}
	for _, r := range []Route{
		{Dst: prefix("fd73:696c:6b::aff:1200/120"), Gw: addr("fd73:696c:6b::aff:1200"), OnLink: true, Priority: 1024},
		{Dst: prefix("fd73:696c:6b::aff:9/128"), Gw: addr("fd73:696c:6b::aff:9"), OnLink: true, Priority: 1024},
	} {
		want.Routes[r.Dst] = r
	}
	for _, a := range []ARP{
		{IP: addr("fd73:696c:6b::aff:1200"), MAC: "ee:ee:0a:ff:12:00", State: nudPermanent},
		{IP: addr("fd73:696c:6b::aff:9"), MAC: "ee:ee:0a:ff:00:09", State: nudPermanent},
	} {
		want.ARP[a.IP] = a
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("dual-stack plan (-want +got):\n%s", diff)
	}
	if arp, ndp := got.Neighbours(); arp != 2 || ndp != 2 {
		t.Errorf("Neighbours() = %d, %d; want 2, 2", arp, ndp)
	}
	if arp, ndp := want4.Neighbours(); arp != 2 || ndp != 0 {
		t.Errorf("IPv4-only Neighbours() = %d, %d; want 2, 0", arp, ndp)
	}
}

func newDualFakeConverger() (*fakeKernel, *Converger) {
	k, c := newFakeConverger()
	k.connected(fakeVTEP, prefix("fd73:696c:6b::aff:1100/120"))
	c.Planner.IPv6 = v6net
	return k, c
}

// TestConvergeDualStack: the IPv6 entries are written once, read back
// equal (no rewrite on the next poll: the kernel's metric is planned),
// removed with their lease, and the connected IPv6 route is left alone.
func TestConvergeDualStack(t *testing.T) {
	k, c := newDualFakeConverger()
	leases := []lease.Lease{remote(17), remote(1), remote(2)}
	res, err := c.Converge(leases)
	if err != nil {
		t.Fatal(err)
	}
	// Per remote: route, ARP, FDB, IPv6 route, IPv6 neighbour.
	if res.Writes != 10 || res.ARP != 2 || res.NDP != 2 || res.Routes != 4 || res.FDB != 2 {
		t.Fatalf("first converge %+v; want 10 writes, 2 ARP, 2 NDP, 4 routes, 2 FDB", res)
	}
	before := k.Writes()
	if res, err := c.Converge(leases); err != nil || res.Writes != 0 || k.Writes() != before {
		t.Fatalf("second converge: %+v, %v; want no writes", res, err)
	}
	if _, err := c.Converge([]lease.Lease{remote(17), remote(1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.routes[routeID{dst: prefix("fd73:696c:6b::aff:200/120"), priority: 1024}]; ok {
		t.Error("IPv6 route to the removed cell survived")
	}
	if _, ok := k.arp[arpID{fakeVTEP, addr("fd73:696c:6b::aff:200")}]; ok {
		t.Error("IPv6 neighbour of the removed cell survived")
	}
	if _, ok := k.routes[routeID{dst: prefix("fd73:696c:6b::aff:1100/120"), priority: 256}]; !ok {
		t.Error("the connected IPv6 route was removed")
	}
	// The kernel's multicast mapping is not silk's to remove.
	k.arp[arpID{fakeVTEP, addr("ff02::16")}] = netlink.Neigh{LinkIndex: fakeVTEP, Family: netlink.FAMILY_V6, IP: addr("ff02::16").AsSlice(), State: netlink.NUD_NOARP}
	// A stale IPv6 neighbour the kernel made is removed like a stale ARP entry.
	k.arp[arpID{fakeVTEP, addr("fe80::1")}] = netlink.Neigh{LinkIndex: fakeVTEP, Family: netlink.FAMILY_V6, IP: addr("fe80::1").AsSlice(), State: netlink.NUD_STALE}
	if _, err := c.Converge([]lease.Lease{remote(17), remote(1)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.arp[arpID{fakeVTEP, addr("fe80::1")}]; ok {
		t.Error("a kernel-made IPv6 neighbour survived")
	}
	if r, a, f := k.Counts(fakeVTEP); r != 4 || a != 3 || f != 1 {
		t.Errorf("kernel holds %d routes, %d neighbours, %d FDB; want 4 (2 connected), 3 (1 multicast), 1", r, a, f)
	}
}

// TestConvergeIPv4OnlyIgnoresIPv6: an IPv4-only cell neither reads nor
// touches IPv6 state on the VTEP (it makes the dumps it always made).
func TestConvergeIPv4OnlyIgnoresIPv6(t *testing.T) {
	k, c := newFakeConverger()
	stray := netlink.Route{LinkIndex: fakeVTEP, Dst: ipNet(prefix("fd73:696c:6b::aff:900/120")), Gw: addr("fd73:696c:6b::aff:900").AsSlice(), Priority: 1024}
	k.routes[routeKey(&stray)] = stray
	k.arp[arpID{fakeVTEP, addr("fd73:696c:6b::aff:900")}] = netlink.Neigh{LinkIndex: fakeVTEP, Family: netlink.FAMILY_V6, IP: addr("fd73:696c:6b::aff:900").AsSlice(), State: nudPermanent}
	res, err := c.Converge([]lease.Lease{remote(17), remote(1)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 3 || res.NDP != 0 {
		t.Errorf("IPv4-only converge %+v; want 3 writes, no NDP", res)
	}
	if len(k.routes) != 3 || len(k.arp) != 2 {
		t.Errorf("IPv6 state touched: %d routes, %d neighbours; want 3, 2", len(k.routes), len(k.arp))
	}
}

// TestSetupDualStackOnAFakeSystem: a dual-stack daemon gives its VTEP the
// IPv6 gateway address (also to a VTEP kept from an IPv4-only start),
// tells silk-cni the IPv6 network, converges the other cell's IPv6 route
// and neighbour, and teardown removes all of it. An IPv4-only daemon's
// network info is exactly upstream's two fields.
func TestSetupDualStackOnAFakeSystem(t *testing.T) {
	ctl := startController(t, "10.255.0.0/16", 24)
	ctx := context.Background()
	var systems []*FakeSystem
	var daemons []*Daemon
	for i, ip := range []string{"10.244.0.1", "10.244.0.2"} {
		sys := NewFakeSystem(netip.MustParseAddr(ip))
		cfg := daemonConfig(t, ctl, &testCell{underlayIP: ip})
		if i == 0 {
			cfg.IPv6OverlayNetwork = overlay6.DefaultNetwork
		}
		d, err := Setup(ctx, logtest.New(t), cfg, sys, ctl.client, newTestSender(t), Options{GCThresh3Path: "-"})
		if err != nil {
			t.Fatal(err)
		}
		systems, daemons = append(systems, sys), append(daemons, d)
	}
	for _, d := range daemons {
		if err := d.Cycle.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	subnet := netip.MustParsePrefix(daemons[0].Lease.OverlaySubnet)
	want6 := netip.PrefixFrom(v6net.Addr(subnet.Addr()), 120)
	if got := addrs6(t, systems[0]); !cmp.Equal(got, []string{want6.String()}) {
		t.Errorf("dual-stack VTEP IPv6 addresses %v, want [%s]", got, want6)
	}
	if got := addrs6(t, systems[1]); len(got) != 0 {
		t.Errorf("IPv4-only VTEP has IPv6 addresses %v", got)
	}
	var info map[string]any
	if err := json.Unmarshal(daemons[0].Info, &info); err != nil {
		t.Fatal(err)
	}
	if info["ipv6_overlay_network"] != overlay6.DefaultNetwork || info["overlay_subnet"] != daemons[0].Lease.OverlaySubnet {
		t.Errorf("dual-stack network info %s", daemons[0].Info)
	}
	if want := fmt.Sprintf(`{"overlay_subnet":%q,"mtu":1450}`, daemons[1].Lease.OverlaySubnet); string(daemons[1].Info) != want {
		t.Errorf("IPv4-only network info %s, want %s", daemons[1].Info, want)
	}

	vtep, _ := ReadVTEP(systems[0], "silk-vtep")
	// Routes: connected IPv4 and IPv6, one per family to the other cell.
	if r, a, f := systems[0].Counts(vtep.Index); r != 4 || a != 2 || f != 1 {
		t.Errorf("dual-stack cell holds %d routes, %d neighbours, %d FDB; want 4, 2, 1", r, a, f)
	}
	other := netip.MustParsePrefix(daemons[1].Lease.OverlaySubnet)
	var got6 []Route
	_ = systems[0].ListRoutes(vtep.Index, 10 /* AF_INET6 */, func(r Route) {
		if r.Gw.IsValid() {
			got6 = append(got6, r)
		}
	})
	wantRoute := Route{Dst: v6net.Prefix6(other), Gw: v6net.Addr(other.Addr()), OnLink: true, Priority: 1024}
	if len(got6) != 1 || got6[0] != wantRoute {
		t.Errorf("IPv6 routes via a gateway %+v, want [%+v]", got6, wantRoute)
	}

	// A restart keeps the address (no EEXIST); a VTEP from an IPv4-only
	// start gets it on a dual-stack restart.
	cfg := daemonConfig(t, ctl, &testCell{underlayIP: "10.244.0.1"})
	cfg.IPv6OverlayNetwork = overlay6.DefaultNetwork
	if _, err := Setup(ctx, logtest.New(t), cfg, systems[0], ctl.client, newTestSender(t), Options{GCThresh3Path: "-"}); err != nil {
		t.Fatalf("dual-stack restart: %v", err)
	}
	cfg = daemonConfig(t, ctl, &testCell{underlayIP: "10.244.0.2"})
	cfg.IPv6OverlayNetwork = overlay6.DefaultNetwork
	if _, err := Setup(ctx, logtest.New(t), cfg, systems[1], ctl.client, newTestSender(t), Options{GCThresh3Path: "-"}); err != nil {
		t.Fatalf("dual-stack restart of an IPv4-only cell: %v", err)
	}
	want6 = netip.PrefixFrom(v6net.Addr(other.Addr()), 120)
	if got := addrs6(t, systems[1]); !cmp.Equal(got, []string{want6.String()}) {
		t.Errorf("VTEP after the dual-stack restart: IPv6 addresses %v, want [%s]", got, want6)
	}

	if err := DeleteVTEP(systems[0], "silk-vtep"); err != nil {
		t.Fatal(err)
	}
	if r, a, f := systems[0].Counts(vtep.Index); r+a+f != 0 {
		t.Errorf("after teardown %d routes, %d neighbours, %d FDB remain", r, a, f)
	}
}

func addrs6(t *testing.T, sys *FakeSystem) []string {
	t.Helper()
	link, err := sys.LinkByName("silk-vtep")
	if err != nil {
		t.Fatal(err)
	}
	as, err := sys.AddrList(link, netlink.FAMILY_V6)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.IPNet.String())
	}
	sort.Strings(out)
	return out
}

// TestConfigIPv6OverlayNetwork: the example config with the key set; only
// the certificate paths (absent here) and, for a bad value, the key itself
// are reported.
func TestConfigIPv6OverlayNetwork(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "silk-daemon.json"))
	if err != nil {
		t.Fatal(err)
	}
	certs := []string{"ca_cert_file", "client_cert_file", "client_key_file"}
	for _, tt := range []struct {
		value   string
		enabled bool
		bad     bool
	}{
		{value: ""},
		{value: "fd73:696c:6b::/96", enabled: true},
		{value: "fd00::/64", bad: true},
		{value: "10.0.0.0/8", bad: true},
	} {
		t.Run(tt.value, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m["ipv6_overlay_network"] = tt.value
			cfg, err := LoadConfig(configtest.Write(t, "c.json", m))
			want := certs
			if tt.bad {
				want = append(append([]string{}, certs...), "ipv6_overlay_network")
			}
			if diff := cmp.Diff(want, configtest.ProblemKeys(err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s\nerror: %v", diff, err)
			}
			if !tt.bad && cfg.IPv6().Enabled() != tt.enabled {
				t.Errorf("IPv6().Enabled() = %v, want %v", cfg.IPv6().Enabled(), tt.enabled)
			}
		})
	}
}

// TestConvergeDualStackOnTheKernel: on a real VTEP the IPv6 gateway
// address, routes and permanent neighbours are what iproute2 shows, read
// back equal to the plan (no writes on the next poll), and go with their
// lease.
func TestConvergeDualStackOnTheKernel(t *testing.T) {
	cell := newTestCell(t)
	vx := createTestVTEP(t, cell, testVTEPConfig(cell), cell17())
	addr6, err := address6(v6net, cell17().OverlaySubnet)
	if err != nil {
		t.Fatal(err)
	}
	if err := EnsureAddress6(cell.nl, "silk-vtep", addr6); err != nil {
		t.Fatal(err)
	}
	if err := EnsureAddress6(cell.nl, "silk-vtep", addr6); err != nil {
		t.Fatalf("second EnsureAddress6: %v", err)
	}
	if out := cell.ns.Run(t, "ip", "-6", "-o", "addr", "show", "dev", "silk-vtep", "scope", "global"); !strings.Contains(out, "inet6 fd73:696c:6b::aff:1100/120 scope global nodad") {
		t.Errorf("VTEP IPv6 address: %s", out)
	}
	k := &countingKernel{Kernel: cell.nl}
	c := &Converger{Kernel: k, LinkIndex: vx.Index, Planner: Planner{Local: local17, Overlay: overlay16, IPv6: v6net}}
	leases := []lease.Lease{cell17(), remote(18), single("10.255.0.9", "10.244.1.9")}
	res, err := c.Converge(leases)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 9 {
		t.Errorf("first converge wrote %d times, want 9", res.Writes)
	}
	view := func() (routes, neighs []string) {
		for _, l := range strings.Split(cell.ns.Run(t, "ip", "-6", "route", "show", "dev", "silk-vtep"), "\n") {
			if strings.Contains(l, " via ") {
				routes = append(routes, strings.TrimSpace(l))
			}
		}
		for _, l := range strings.Split(cell.ns.Run(t, "ip", "-6", "neigh", "show", "dev", "silk-vtep"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				neighs = append(neighs, l)
			}
		}
		sort.Strings(routes)
		sort.Strings(neighs)
		return routes, neighs
	}
	routes, neighs := view()
	wantRoutes := []string{
		"fd73:696c:6b::aff:1200/120 via fd73:696c:6b::aff:1200 metric 1024 onlink pref medium",
		"fd73:696c:6b::aff:9 via fd73:696c:6b::aff:9 metric 1024 onlink pref medium",
	}
	wantNeighs := []string{
		"fd73:696c:6b::aff:1200 lladdr ee:ee:0a:ff:12:00 PERMANENT",
		"fd73:696c:6b::aff:9 lladdr ee:ee:0a:ff:00:09 PERMANENT",
	}
	if diff := cmp.Diff(wantRoutes, routes); diff != "" {
		t.Errorf("IPv6 routes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantNeighs, neighs); diff != "" {
		t.Errorf("IPv6 neighbours (-want +got):\n%s", diff)
	}
	cur, err := c.Current()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := c.Planner.Plan(leases)
	if ch := Diff(cur, want); ch.Len() != 0 {
		t.Fatalf("second converge would write %+v", ch)
	}
	if _, err := c.Converge([]lease.Lease{cell17()}); err != nil {
		t.Fatal(err)
	}
	if routes, neighs := view(); len(routes)+len(neighs) != 0 {
		t.Errorf("after the leases went: routes %q neighbours %q", routes, neighs)
	}
}

// TestAddress6: the VTEP's IPv6 address is the lease's first address
// mapped, with the lease's mapped length (a single-IP daemon's is a /128).
func TestAddress6(t *testing.T) {
	for lease, want := range map[string]string{
		"10.255.17.0/24": "fd73:696c:6b::aff:1100/120",
		"10.255.0.5/32":  "fd73:696c:6b::aff:5/128",
		"10.255.30.1/24": "fd73:696c:6b::aff:1e01/120", // unmasked, as written (like the IPv4 address)
	} {
		got, err := address6(v6net, lease)
		if err != nil || got.String() != want {
			t.Errorf("address6(%s) = %s, %v; want %s", lease, got, err, want)
		}
	}
	if _, err := address6(v6net, "fd00::/64"); err == nil {
		t.Error("address6 of an IPv6 lease did not fail")
	}
}
