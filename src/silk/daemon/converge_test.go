package daemon

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/silk/lease"
)

const fakeVTEP = 7

func newFakeConverger() (*fakeKernel, *Converger) {
	k := newFakeKernel()
	k.connected(fakeVTEP, prefix("10.255.17.0/16"))
	return k, &Converger{Kernel: k, LinkIndex: fakeVTEP, Planner: Planner{Local: local17, Overlay: overlay16}}
}

func TestConvergeWritesOnlyTheDifference(t *testing.T) {
	k, c := newFakeConverger()
	leases := []lease.Lease{remote(17), remote(1), remote(2), remote(3)}

	res, err := c.Converge(leases)
	if err != nil {
		t.Fatal(err)
	}
	if res.Writes != 9 || k.Writes() != 9 {
		t.Fatalf("first converge: %d writes reported, %d made; want 9", res.Writes, k.Writes())
	}
	if len(k.routes) != 4 || len(k.arp) != 3 || len(k.fdb) != 3 {
		t.Fatalf("kernel holds %d routes, %d arp, %d fdb; want 4 (with the connected one), 3, 3", len(k.routes), len(k.arp), len(k.fdb))
	}

	before := k.Writes()
	if res, err = c.Converge(leases); err != nil || res.Writes != 0 || k.Writes() != before {
		t.Fatalf("second converge: %+v, %v, %d writes; want none", res, err, k.Writes()-before)
	}

	before = k.Writes()
	if _, err := c.Converge([]lease.Lease{remote(17), remote(1), remote(3)}); err != nil {
		t.Fatal(err)
	}
	if n := k.Writes() - before; n != 3 {
		t.Fatalf("removing a cell took %d writes, want 3", n)
	}
	if _, ok := k.routes[routeID{dst: prefix("10.255.2.0/24")}]; ok {
		t.Error("route to the removed cell survived")
	}
	if _, ok := k.routes[routeID{dst: prefix("10.255.0.0/16")}]; !ok {
		t.Error("the connected overlay route was removed")
	}
	if len(k.routes) != 3 || len(k.arp) != 2 || len(k.fdb) != 2 {
		t.Errorf("kernel holds %d routes, %d arp, %d fdb; want 3, 2, 2", len(k.routes), len(k.arp), len(k.fdb))
	}

	// A cell that moved to another underlay IP: one FDB write.
	moved := remote(3)
	moved.UnderlayIP = "10.244.5.5"
	before = k.Writes()
	if _, err := c.Converge([]lease.Lease{remote(17), remote(1), moved}); err != nil {
		t.Fatal(err)
	}
	if n := k.Writes() - before; n != 1 {
		t.Fatalf("moving a cell took %d writes, want 1", n)
	}
}

func TestConvergeLeavesOtherRoutesAlone(t *testing.T) {
	k, c := newFakeConverger()
	// A route on the VTEP through a gateway outside the overlay is not ours.
	foreign := netlink.Route{LinkIndex: fakeVTEP, Dst: ipNet(prefix("192.168.0.0/24")), Gw: addr("10.244.0.1").AsSlice(), Table: unix.RT_TABLE_MAIN}
	k.routes[routeKey(&foreign)] = foreign
	// Nor is one of ours on another device.
	other := netlink.Route{LinkIndex: fakeVTEP + 1, Dst: ipNet(prefix("10.255.9.0/24")), Gw: addr("10.255.9.0").AsSlice(), Table: unix.RT_TABLE_MAIN}
	k.routes[routeKey(&other)] = other

	if _, err := c.Converge(nil); err != nil {
		t.Fatal(err)
	}
	if len(k.routes) != 3 || k.Writes() != 0 {
		t.Fatalf("converge with no leases: %d routes left, %d writes; want 3, 0", len(k.routes), k.Writes())
	}
}

func TestConvergeTreatsDeletesOfGoneEntriesAsDone(t *testing.T) {
	if err := ignoreGone(syscall.ENOENT); err != nil {
		t.Errorf("ENOENT: %v", err)
	}
	if err := ignoreGone(syscall.ESRCH); err != nil {
		t.Errorf("ESRCH: %v", err)
	}
	if err := ignoreGone(syscall.EPERM); !errors.Is(err, syscall.EPERM) {
		t.Errorf("EPERM: %v", err)
	}

	k, c := newFakeConverger()
	if _, err := c.Converge([]lease.Lease{remote(1)}); err != nil {
		t.Fatal(err)
	}
	// Entries vanish between the snapshot and the deletes.
	racy := &vanishingKernel{fakeKernel: k}
	c.Kernel = racy
	if _, err := c.Converge(nil); err != nil {
		t.Fatalf("converge racing with the kernel: %v", err)
	}
}

// vanishingKernel removes every entry right after listing it.
type vanishingKernel struct{ *fakeKernel }

func (v *vanishingKernel) ListNeighbors(link, family int, fn func(netip.Addr, net.HardwareAddr, int)) error {
	out := v.fakeKernel.neighList(link, family)
	for i := range out {
		_ = v.fakeKernel.NeighDel(&out[i])
	}
	for _, n := range out {
		ip, _ := addrOf(n.IP)
		fn(ip, n.HardwareAddr, n.State)
	}
	return nil
}

func TestConvergeAttemptsEveryWriteAndJoinsFailures(t *testing.T) {
	k, c := newFakeConverger()
	k.fail["RouteReplace"] = syscall.ENETUNREACH
	_, err := c.Converge([]lease.Lease{remote(1), remote(2)})
	if err == nil || !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("err = %v, want the route failures", err)
	}
	if n := strings.Count(err.Error(), "replace route"); n != 2 {
		t.Errorf("error names %d route failures, want 2: %v", n, err)
	}
	if len(k.arp) != 2 || len(k.fdb) != 2 {
		t.Errorf("neighbours were not written despite the route failures: %d arp, %d fdb", len(k.arp), len(k.fdb))
	}
}

// TestConvergeRepeatsInterruptedDumps: a dump the kernel interrupted is read
// again from the start, so nothing is counted twice and nothing is written.
func TestConvergeRepeatsInterruptedDumps(t *testing.T) {
	k, c := newFakeConverger()
	leases := []lease.Lease{remote(17), remote(1), remote(2)}
	if _, err := c.Converge(leases); err != nil {
		t.Fatal(err)
	}
	k.interrupt["ListRoutes"] = 2
	k.interrupt["ListNeighbors"] = 3 // the ARP dump twice, the FDB dump once
	cur, err := c.Current()
	if err != nil {
		t.Fatal(err)
	}
	if len(cur.Routes) != 2 || len(cur.ARP) != 2 || len(cur.FDB) != 2 {
		t.Fatalf("read %d routes, %d arp, %d fdb after interruptions; want 2, 2, 2", len(cur.Routes), len(cur.ARP), len(cur.FDB))
	}
	k.interrupt["ListRoutes"] = 1
	before := k.Writes()
	if res, err := c.Converge(leases); err != nil || res.Writes != 0 || k.Writes() != before {
		t.Fatalf("converge after an interrupted dump: %+v, %v; want no writes", res, err)
	}
}
