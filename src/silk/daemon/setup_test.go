package daemon

import (
	"context"
	"net/netip"
	"testing"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

// Setup and the poll cycle run on a FakeSystem against a real controller
// (what netman-fleet does): each cell acquires a lease and creates its
// VTEP, a poll converges the other cell's route, ARP and FDB entry, and a
// restarted daemon reads its lease back from the VTEP and renews it.
func TestSetupOnAFakeSystem(t *testing.T) {
	ctl := startController(t, "10.255.0.0/16", 24)
	ctx := context.Background()
	var systems []*FakeSystem
	var daemons []*Daemon
	for _, ip := range []string{"10.244.0.1", "10.244.0.2"} {
		sys := NewFakeSystem(netip.MustParseAddr(ip))
		cfg := daemonConfig(t, ctl, &testCell{underlayIP: ip})
		d, err := Setup(ctx, logtest.New(t), cfg, sys, ctl.client, newTestSender(t), Options{GCThresh3Path: "-"})
		if err != nil {
			t.Fatal(err)
		}
		systems, daemons = append(systems, sys), append(daemons, d)
	}
	if daemons[0].Lease.OverlaySubnet == daemons[1].Lease.OverlaySubnet {
		t.Fatalf("both cells got %s", daemons[0].Lease.OverlaySubnet)
	}
	for _, d := range daemons {
		if err := d.Cycle.Run(ctx); err != nil {
			t.Fatal(err)
		}
	}
	vtep, err := ReadVTEP(systems[0], "silk-vtep")
	if err != nil {
		t.Fatal(err)
	}
	// The connected route of the cell's own address plus one per other cell.
	if r, a, f := systems[0].Counts(vtep.Index); r != 2 || a != 1 || f != 1 {
		t.Errorf("cell 1 holds %d routes, %d ARP, %d FDB entries; want 2, 1, 1", r, a, f)
	}
	if f, _ := systems[0].Features("silk-vtep"); f["tx-checksum-ip-generic"] {
		t.Errorf("VTEP offloads not set: %v", f)
	}

	cfg := daemonConfig(t, ctl, &testCell{underlayIP: "10.244.0.1"})
	again, err := Setup(ctx, logtest.New(t), cfg, systems[0], ctl.client, newTestSender(t), Options{GCThresh3Path: "-"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Lease != daemons[0].Lease {
		t.Errorf("restarted cell has lease %+v, want %+v", again.Lease, daemons[0].Lease)
	}
}
