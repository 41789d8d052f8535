package daemon

import (
	"fmt"
	"net/netip"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/silk/lease"
)

var (
	overlay16 = netip.MustParsePrefix("10.255.0.0/16")
	local17   = netip.MustParsePrefix("10.255.17.0/24")
)

// remote is the lease of a cell with underlay 10.244.0.<n> and subnet
// 10.255.<n>.0/24.
func remote(n int) lease.Lease {
	subnet := fmt.Sprintf("10.255.%d.0/24", n)
	mac, err := lease.HardwareAddr(subnet)
	if err != nil {
		panic(err)
	}
	return lease.Lease{UnderlayIP: fmt.Sprintf("10.244.0.%d", n), OverlaySubnet: subnet, OverlayHardwareAddr: mac}
}

func single(ip, underlay string) lease.Lease {
	mac, _ := lease.HardwareAddr(ip + "/32")
	return lease.Lease{UnderlayIP: underlay, OverlaySubnet: ip + "/32", OverlayHardwareAddr: mac}
}

var (
	addr   = netip.MustParseAddr
	prefix = netip.MustParsePrefix
)

func TestPlan(t *testing.T) {
	planner := Planner{Local: local17, Overlay: overlay16}
	type entries struct {
		routes []Route
		arp    []ARP
		fdb    []FDB
	}
	tests := []struct {
		name   string
		p      Planner
		leases []lease.Lease
		want   entries
		stats  PlanStats
	}{
		{name: "no leases", p: planner},
		{name: "only the local lease", p: planner, leases: []lease.Lease{remote(17)}},
		{
			name: "a remote block lease: route, ARP and FDB", p: planner,
			leases: []lease.Lease{remote(17), remote(18)},
			want: entries{
				routes: []Route{{Dst: prefix("10.255.18.0/24"), Gw: addr("10.255.18.0"), Src: addr("10.255.17.0")}},
				arp:    []ARP{{IP: addr("10.255.18.0"), MAC: "ee:ee:0a:ff:12:00", State: nudPermanent}},
				fdb:    []FDB{{MAC: "ee:ee:0a:ff:12:00", Dst: addr("10.244.0.18"), State: nudPermanent}},
			},
		},
		{
			name: "single-IP leases get ARP and FDB but no route", p: planner,
			leases: []lease.Lease{single("10.255.0.9", "10.244.1.9")},
			want: entries{
				arp: []ARP{{IP: addr("10.255.0.9"), MAC: "ee:ee:0a:ff:00:09", State: nudPermanent}},
				fdb: []FDB{{MAC: "ee:ee:0a:ff:00:09", Dst: addr("10.244.1.9"), State: nudPermanent}},
			},
		},
		{
			name: "a single-IP daemon: routes onlink, sourced from its own address",
			p:    Planner{Local: prefix("10.255.0.5/32"), Overlay: overlay16, OnLink: true},
			leases: []lease.Lease{
				single("10.255.0.5", "10.244.1.5"), // itself
				remote(20),
			},
			want: entries{
				routes: []Route{{Dst: prefix("10.255.20.0/24"), Gw: addr("10.255.20.0"), Src: addr("10.255.0.5"), OnLink: true}},
				arp:    []ARP{{IP: addr("10.255.20.0"), MAC: "ee:ee:0a:ff:14:00", State: nudPermanent}},
				fdb:    []FDB{{MAC: "ee:ee:0a:ff:14:00", Dst: addr("10.244.0.20"), State: nudPermanent}},
			},
		},
		{
			name: "leases outside the overlay are skipped and counted", p: planner,
			leases: []lease.Lease{
				{UnderlayIP: "10.244.0.1", OverlaySubnet: "10.254.1.0/24", OverlayHardwareAddr: "ee:ee:0a:fe:01:00"},
				{UnderlayIP: "10.244.0.2", OverlaySubnet: "10.0.0.0/8", OverlayHardwareAddr: "ee:ee:0a:00:00:00"},
				{UnderlayIP: "10.244.0.3", OverlaySubnet: "10.254.0.0/15", OverlayHardwareAddr: "ee:ee:0a:fe:00:00"},
			},
			stats: PlanStats{NonRoutable: 3},
		},
		{
			name: "malformed and colliding leases are skipped and counted", p: planner,
			leases: []lease.Lease{
				{UnderlayIP: "10.244.0.1", OverlaySubnet: "nope", OverlayHardwareAddr: "ee:ee:0a:ff:01:00"},
				{UnderlayIP: "nope", OverlaySubnet: "10.255.1.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:01:00"},
				{UnderlayIP: "10.244.0.1", OverlaySubnet: "10.255.1.0/24", OverlayHardwareAddr: "nope"},
				{UnderlayIP: "fd00::1", OverlaySubnet: "10.255.1.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:01:00"},
				{UnderlayIP: "10.244.0.1", OverlaySubnet: "fd00::/64", OverlayHardwareAddr: "ee:ee:0a:ff:01:00"},
				{UnderlayIP: "10.244.0.5", OverlaySubnet: "10.255.17.5/32", OverlayHardwareAddr: "ee:ee:0a:ff:11:05"}, // inside the local subnet
				remote(18),
				{UnderlayIP: "10.244.9.9", OverlaySubnet: "10.255.18.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:12:01"}, // same subnet again
			},
			want: entries{
				routes: []Route{{Dst: prefix("10.255.18.0/24"), Gw: addr("10.255.18.0"), Src: addr("10.255.17.0")}},
				arp:    []ARP{{IP: addr("10.255.18.0"), MAC: "ee:ee:0a:ff:12:00", State: nudPermanent}},
				fdb:    []FDB{{MAC: "ee:ee:0a:ff:12:00", Dst: addr("10.244.0.18"), State: nudPermanent}},
			},
			stats: PlanStats{Invalid: 7},
		},
		{
			name: "an unmasked subnet routes the network via the address as written", p: planner,
			leases: []lease.Lease{{UnderlayIP: "10.244.0.30", OverlaySubnet: "10.255.30.1/24", OverlayHardwareAddr: "EE:EE:0A:FF:1E:01"}},
			want: entries{
				routes: []Route{{Dst: prefix("10.255.30.0/24"), Gw: addr("10.255.30.1"), Src: addr("10.255.17.0")}},
				arp:    []ARP{{IP: addr("10.255.30.1"), MAC: "ee:ee:0a:ff:1e:01", State: nudPermanent}},
				fdb:    []FDB{{MAC: "ee:ee:0a:ff:1e:01", Dst: addr("10.244.0.30"), State: nudPermanent}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, stats := tt.p.Plan(tt.leases)
			got := entries{routes: values(d.Routes), arp: values(d.ARP), fdb: values(d.FDB)}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(entries{}), cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("desired state (-want +got):\n%s", diff)
			}
			if stats != tt.stats {
				t.Errorf("stats = %+v, want %+v", stats, tt.stats)
			}
		})
	}
}

func values[K comparable, V any](m map[K]V) []V {
	out := make([]V, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i]) < fmt.Sprint(out[j]) })
	return out
}

func TestPlanIsDeterministic(t *testing.T) {
	p := Planner{Local: local17, Overlay: overlay16}
	leases := []lease.Lease{remote(1), remote(2), remote(3), single("10.255.0.4", "10.244.1.4")}
	a, _ := p.Plan(leases)
	b, _ := p.Plan([]lease.Lease{leases[3], leases[2], leases[1], leases[0]})
	if diff := cmp.Diff(a, b, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("order of leases changed the plan:\n%s", diff)
	}
}

func TestDiff(t *testing.T) {
	p := Planner{Local: local17, Overlay: overlay16}
	want, _ := p.Plan([]lease.Lease{remote(1), remote(2), remote(3)})
	r := func(n int) Route { return want.Routes[prefix(fmt.Sprintf("10.255.%d.0/24", n))] }
	a := func(n int) ARP { return want.ARP[addr(fmt.Sprintf("10.255.%d.0", n))] }
	f := func(n int) FDB { return want.FDB[fmt.Sprintf("ee:ee:0a:ff:%02x:00", n)] }
	all := Current{Routes: []Route{r(1), r(2), r(3)}, ARP: []ARP{a(1), a(2), a(3)}, FDB: []FDB{f(1), f(2), f(3)}}

	stale := Route{Dst: prefix("10.255.9.0/24"), Gw: addr("10.255.9.0"), Src: addr("10.255.17.0")}
	staleARP := ARP{IP: addr("10.255.9.0"), MAC: "ee:ee:0a:ff:09:00", State: nudPermanent}
	staleFDB := FDB{MAC: "ee:ee:0a:ff:09:00", Dst: addr("10.244.0.9"), State: nudPermanent}
	movedFDB := FDB{MAC: f(2).MAC, Dst: addr("10.244.7.7"), State: nudPermanent}
	otherGw := Route{Dst: r(1).Dst, Gw: addr("10.255.1.7"), Src: addr("10.255.17.0")}
	otherMetric := r(1)
	otherMetric.Priority = 100
	failedARP := ARP{IP: addr("10.255.99.5"), State: 0x20} // NUD_FAILED, no MAC
	dynamicARP := a(3)
	dynamicARP.State = 0x02 // NUD_REACHABLE, learned by the kernel

	tests := []struct {
		name string
		cur  Current
		want Changes
	}{
		{name: "empty kernel: everything added", cur: Current{}, want: Changes{
			RouteReplaces: []Route{r(1), r(2), r(3)}, ARPSets: []ARP{a(1), a(2), a(3)}, FDBSets: []FDB{f(1), f(2), f(3)},
		}},
		{name: "in step: nothing", cur: all},
		{name: "stale cell: exactly its three entries deleted", cur: Current{
			Routes: append(all.Routes, stale), ARP: append(all.ARP, staleARP), FDB: append(all.FDB, staleFDB),
		}, want: Changes{RouteDeletes: []Route{stale}, ARPDeletes: []ARP{staleARP}, FDBDeletes: []FDB{staleFDB}}},
		{name: "changed entries are overwritten, not deleted", cur: Current{
			Routes: []Route{otherGw, r(2), r(3)}, ARP: []ARP{a(1), a(2), dynamicARP}, FDB: []FDB{f(1), movedFDB, f(3)},
		}, want: Changes{RouteReplaces: []Route{r(1)}, ARPSets: []ARP{a(3)}, FDBSets: []FDB{f(2)}}},
		{name: "a route a replace cannot overwrite is deleted", cur: Current{
			Routes: []Route{otherMetric, r(1), r(2), r(3)}, ARP: all.ARP, FDB: all.FDB,
		}, want: Changes{RouteDeletes: []Route{otherMetric}}},
		{name: "kernel-made ARP entries on the VTEP are removed", cur: Current{
			Routes: all.Routes, ARP: append(all.ARP, failedARP), FDB: all.FDB,
		}, want: Changes{ARPDeletes: []ARP{failedARP}}},
		{name: "a MAC with several remotes keeps only the right one", cur: Current{
			Routes: all.Routes, ARP: all.ARP, FDB: []FDB{f(1), movedFDB, f(2), f(3)},
		}, want: Changes{FDBDeletes: []FDB{movedFDB}}},
		{name: "several wrong remotes: all deleted, the right one set", cur: Current{
			Routes: all.Routes, ARP: all.ARP, FDB: []FDB{f(1), movedFDB, {MAC: f(2).MAC, Dst: addr("10.244.8.8"), State: nudPermanent}, f(3)},
		}, want: Changes{FDBSets: []FDB{f(2)}, FDBDeletes: []FDB{movedFDB, {MAC: f(2).MAC, Dst: addr("10.244.8.8"), State: nudPermanent}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Diff(tt.cur, want)
			sortChanges(&got)
			sortChanges(&tt.want)
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("changes (-want +got):\n%s", diff)
			}
		})
	}
}

func sortChanges(c *Changes) {
	sortBy(c.RouteReplaces)
	sortBy(c.RouteDeletes)
	sortBy(c.ARPSets)
	sortBy(c.ARPDeletes)
	sortBy(c.FDBSets)
	sortBy(c.FDBDeletes)
}

func sortBy[T any](s []T) {
	sort.Slice(s, func(i, j int) bool { return fmt.Sprint(s[i]) < fmt.Sprint(s[j]) })
}
