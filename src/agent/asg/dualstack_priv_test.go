package asg

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// dualGroups allows, for the container's space: tcp 8443 to the allowed
// destination, ICMPv6 echo request to the denied one (whose tcp stays
// rejected), and ICMP (IPv4) echo everywhere, which must not let IPv6
// pings through.
func dualGroups(c *netnstest.Cell6) []policy.SecurityGroup {
	return []policy.SecurityGroup{{GUID: "g6", RunningSpaceGUIDs: []string{"s"}, Rules: fmt.Sprintf(`[
		{"protocol":"tcp","destination":"%s","ports":"8443"},
		{"protocol":"icmpv6","destination":"%s","type":128,"code":0},
		{"protocol":"icmp","destination":"0.0.0.0/0","type":-1,"code":-1},
		{"protocol":"tcp","destination":"10.0.0.0/8","ports":"8443"}
	]`, c.DstAllowed, c.DstDenied)}}
}

// checkDualTraffic checks real IPv6 traffic from the container against
// dualGroups.
func checkDualTraffic(t *testing.T, c *netnstest.Cell6) {
	t.Helper()
	if _, err := c.Dial(c.DstAllowed, 8443); err != nil {
		t.Errorf("tcp to the allowed IPv6 destination: %v", err)
	}
	if _, err := c.Dial(c.DstDenied, 8443); !netnstest.Refused(err) {
		t.Errorf("tcp to the other IPv6 destination: %v, want refused", err)
	}
	ping := func(dst netip.Addr) bool {
		ok, err := c.Ping6(dst)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !ping(c.DstDenied) {
		t.Error("icmpv6 echo request allowed by the icmpv6 rule did not get through")
	}
	if ping(c.DstAllowed) {
		t.Error("IPv6 ping allowed by an icmp (IPv4) rule")
	}
}

// TestDualStackASGOnKernelIPTables syncs an IPv6 security group with the
// ip6tables syncer (Family IPv6) for a container the wrapper set up on a
// dual-stack cell, on iptables-nft and iptables-legacy, and checks real
// IPv6 traffic from the container.
func TestDualStackASGOnKernelIPTables(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctx := t.Context()
			ip4 := netip.MustParseAddr("10.255.1.2")
			wcfg := wrapperConfig(false, cniwrapper.OutConn{})
			wcfg.IPv6OverlayNetwork = overlay6
			c := netnstest.NewCell6(t, wcfg.IPv6().Addr(ip4))
			c.Listen(t, 8443)
			handle := "dual-" + netnstest.UniqueName("")
			add, err := cniwrapper.PlanAdd(wcfg, cniwrapper.Container{Handle: handle, IP: ip4, Workload: "app", Interfaces: []string{c.Underlay}})
			if err != nil {
				t.Fatal(err)
			}
			d6 := &nsBackend{ns: c.Cell, d: iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: t.TempDir() + "/lock"})}
			if err := d6.Apply(ctx, add.IPv6.Filter, add.IPv6.NAT, add.IPv6.Mangle); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Dial(c.DstAllowed, 8443); err == nil {
				t.Fatal("IPv6 egress allowed before any security group was synced")
			}
			s, err := New(logtest.New(t), d6, &fakeSource{groups: dualGroups(c)},
				Config{Family: iptables.IPv6, IPv6OverlayNetwork: overlay6, DeniedLogsPerSec: 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.SyncAll(ctx, []Container{{Handle: handle, IP: ip4.String(), SpaceID: "s", Workload: "app"}}); err != nil {
				t.Fatal(err)
			}
			checkDualTraffic(t, c)
			// The orphan cleanup removes the ip6tables chain too.
			if err := s.CleanupContainer(ctx, handle); err != nil {
				t.Fatal(err)
			}
			if st, err := d6.Save(ctx, iptables.Filter); err != nil || st.Has(rules.ASGChain(handle)) {
				t.Errorf("asg chain left after cleanup: %v", err)
			}
		})
	}
}

// TestDualStackASGOnKernelNFT is the same with the nftables backend: one
// inet asg chain holds both families' destinations.
func TestDualStackASGOnKernelNFT(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := t.Context()
	ip4 := netip.MustParseAddr("10.255.1.2")
	wcfg := wrapperConfig(false, cniwrapper.OutConn{})
	wcfg.IPv6OverlayNetwork = overlay6
	wcfg.EnforcementBackend = cniwrapper.BackendNFTables
	c := netnstest.NewCell6(t, wcfg.IPv6().Addr(ip4))
	c.Listen(t, 8443)
	handle := "dual-" + netnstest.UniqueName("")
	var k *nft.Kernel
	in := func(fn func() error) {
		t.Helper()
		if err := c.Cell.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	in(func() (err error) { k, err = nft.New(); return err })
	add, err := cniwrapper.PlanAddNFT(wcfg, cniwrapper.Container{Handle: handle, IP: ip4, Workload: "app", Interfaces: []string{c.Underlay}})
	if err != nil {
		t.Fatal(err)
	}
	in(func() error { return cniwrapper.NFTAdd(ctx, k, add) })
	p, err := NewPlanner(Config{IPv6OverlayNetwork: overlay6, DeniedLogsPerSec: 1})
	if err != nil {
		t.Fatal(err)
	}
	e := NewNFTEnforcer(k)
	in(func() error {
		res, err := e.Enforce(ctx, p.PlanNFT([]Container{{Handle: handle, IP: ip4.String(), SpaceID: "s", Workload: "app"}}, dualGroups(c), 100))
		if err == nil && len(res.ParentAbsent) > 0 {
			err = fmt.Errorf("netout chain not found: %+v", res)
		}
		return err
	})
	checkDualTraffic(t, c)
}
