package asg

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// TestNFTEgressOnKernel sets a container up as cni-wrapper-plugin does in
// nftables mode, then syncs a security group allowing tcp to one outside
// address and port, and checks real connections: that one goes through
// (logged OK_), another address and another port are rejected (logged
// DENY_), and before the sync everything was.
func TestNFTEgressOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	cell := nfttest.NewCell(t, "10.244.0.3", "10.244.0.4")
	ctr := cell.AddContainer(t, "10.255.1.2")
	for _, addr := range []string{"10.244.0.3:80", "10.244.0.3:81", "10.244.0.4:80"} {
		nfttest.Listen(t, cell.Outside, addr)
	}
	handle := "asg-" + netnstest.UniqueName("")
	var k *nft.Kernel
	cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	wcfg := &cniwrapper.Config{VTEPName: "silk-vtep", IngressTag: "ffff0000", InstanceAddress: "10.244.0.1",
		NoMasqueradeCIDRRange: "10.255.0.0/16", IPTablesASGLogging: true, IPTablesDeniedLogsPerSec: 100, IPTablesAcceptedUDPLogsPerSec: 100}
	add, err := cniwrapper.PlanAddNFT(wcfg, cniwrapper.Container{Handle: handle, IP: ctr.IP, Workload: "app", Interfaces: []string{cell.Underlay}})
	if err != nil {
		t.Fatal(err)
	}
	cell.Do(t, func() error { return cniwrapper.NFTAdd(ctx, k, add) })
	if nfttest.Connects(t, ctr.NS, "10.244.0.3:80") {
		t.Fatal("egress allowed before any security group was synced")
	}

	netnstest.LogAllNetns(t)
	klog := nfttest.OpenKernelLog(t)
	p, err := NewPlanner(Config{ASGLogging: true, DeniedLogsPerSec: 100})
	if err != nil {
		t.Fatal(err)
	}
	groups := []policy.SecurityGroup{{GUID: "g", RunningSpaceGUIDs: []string{"s"},
		Rules: `[{"protocol":"tcp","destination":"10.244.0.3","ports":"80"}]`}}
	e := NewNFTEnforcer(k)
	var res NFTResult
	cell.Do(t, func() (err error) {
		res, err = e.Enforce(ctx, p.PlanNFT([]Container{{Handle: handle, IP: "10.255.1.2", SpaceID: "s", Workload: "app"}}, groups, 100))
		return err
	})
	if len(res.ParentAbsent) > 0 {
		t.Fatalf("netout chain not found: %+v", res)
	}
	for _, tt := range []struct {
		to   string
		want bool
	}{{"10.244.0.3:80", true}, {"10.244.0.3:81", false}, {"10.244.0.4:80", false}} {
		if got := nfttest.Connects(t, ctr.NS, tt.to); got != tt.want {
			t.Errorf("→ %s: connected %t, want %t", tt.to, got, tt.want)
		}
	}
	prefix := func(kind string) string {
		s := kind + handle
		if len(s) > 28 {
			s = s[:28]
		}
		return s + " "
	}
	if line := klog.WaitFor(prefix("OK_"), 5*time.Second); !strings.Contains(line, "DST=10.244.0.3") {
		t.Errorf("no OK_ line for the allowed connection (got %q)", line)
	}
	if line := klog.WaitFor(prefix("DENY_"), 5*time.Second); line == "" {
		t.Error("no DENY_ line for the rejected connections")
	}
}

// TestNFTGoldensLoad checks every asg golden file with `nft -c -f`.
func TestNFTGoldensLoad(t *testing.T) { nfttest.CheckFiles(t, "testdata/nft-*.golden") }
