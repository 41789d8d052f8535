package cniwrapper

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestDualStackTrafficIPTables installs a dual-stack container's IPv6 rules
// with ip6tables on both backends and checks real traffic: an allowed IPv6
// destination is reached and sees the cell's address (masquerade), a
// destination the rules do not allow is refused, neighbour discovery
// between the cell and the container gets through the input chain's
// default reject; DEL then leaves the ip6tables tables as they were.
func TestDualStackTrafficIPTables(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctrIP4 := netip.MustParseAddr("10.255.17.5")
			cfg := baseConfig(t)
			cfg.IPv6OverlayNetwork = "fd73:696c:6b::/96"
			c := netnstest.NewCell6(t, cfg.IPv6().Addr(ctrIP4))
			c.Listen(t, 8443)
			plan, err := PlanAdd(cfg, Container{Handle: "dual-1", IP: ctrIP4, Workload: "app", Interfaces: []string{c.Underlay}})
			if err != nil {
				t.Fatal(err)
			}
			netOut := []NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange(c.DstAllowed.String(), c.DstAllowed.String())}, Ports: []PortRange{{Start: 8443, End: 8443}}}}
			d := iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: t.TempDir() + "/iptables.lock"})
			before := saveAll(t, c.Cell, d)
			if err := c.Cell.Do(func() error {
				return d.Apply(t.Context(), plan.IPv6.Filter, plan.IPv6.NAT, plan.IPv6.Mangle, plan.IPv6.NetOut(netOut, nil))
			}); err != nil {
				t.Fatal(err)
			}
			if seen, err := c.Dial(c.DstAllowed, 8443); err != nil || seen != c.CellIP.String() {
				t.Errorf("allowed destination: saw %q, %v (want the cell's %s: masqueraded)", seen, err, c.CellIP)
			}
			if _, err := c.Dial(c.DstDenied, 8443); !netnstest.Refused(err) {
				t.Errorf("destination no rule allows: %v, want connection refused", err)
			}
			del := &DelPlanner{Handle: "dual-1", IP: c.CtrIP, NoMasquerade: cfg.IPv6().Prefix(), VTEPName: cfg.VTEPName}
			if err := c.Cell.Do(func() error {
				_, err := d.UpdateTables(t.Context(), DelTables, del.Plan)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if got := saveAll(t, c.Cell, d); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("DEL left ip6tables:\n%v\nwant\n%v", got, before)
			}
		})
	}
}

// TestDualStackTrafficNFT is TestDualStackTrafficIPTables with the
// nftables backend: the container's IPv6 packets reach its inet chains
// through the IPv6 dispatch maps.
func TestDualStackTrafficNFT(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := t.Context()
	ctrIP4 := netip.MustParseAddr("10.255.17.5")
	cfg := baseConfig(t)
	cfg.IPv6OverlayNetwork = "fd73:696c:6b::/96"
	cfg.EnforcementBackend = BackendNFTables
	// Every IPv6 feature, so the kernel check below covers all its text.
	cfg.OutConn = OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}
	cfg.DenyNetworks.Always = []string{"fd00:ec2::254/128", "2001:db8:ff::/48"}
	cfg.HostTCPServicesIPv6 = []string{"[2001:db8:9::1]:9000"}
	cfg.InstanceAddressIPv6 = "2001:db8:9::1"
	cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}}
	c := netnstest.NewCell6(t, cfg.IPv6().Addr(ctrIP4))
	c.Listen(t, 8443)
	var k *nft.Kernel
	in := func(fn func() error) {
		t.Helper()
		if err := c.Cell.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	in(func() (err error) { k, err = nft.New(); return err })
	// The skeleton alone is what DEL must leave.
	in(func() error { tx := k.NewTransaction(); nft.AddSkeleton(tx); return k.Run(ctx, tx) })
	var before *nft.State
	in(func() (err error) { before, err = k.Read(ctx); return err })

	plan, err := PlanAddNFT(cfg, Container{Handle: "dual-1", IP: ctrIP4, Workload: "app", Interfaces: []string{c.Underlay}})
	if err != nil {
		t.Fatal(err)
	}
	in(func() error { return NFTAdd(ctx, k, plan) })
	if _, err := c.Dial(c.DstAllowed, 8443); err == nil {
		t.Error("egress allowed before any netOut rule")
	}
	rs, _ := plan.NetOut(append([]NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange(c.DstAllowed.String(), c.DstAllowed.String())}, Ports: []PortRange{{Start: 8443, End: 8443}}}},
		dualStackNetOut...))
	in(func() error { return NFTSetNetOut(ctx, k, rs) })
	// What the planners wrote is what nft lists back, byte for byte, so
	// the agent's diffs of these chains and sets find nothing to change.
	var st *nft.State
	in(func() (err error) { st, err = k.Read(ctx); return err })
	want := nft.StateOf(plan.Objects)
	want.Apply(plan.Dispatch)
	want.Apply(rs)
	for n, ch := range want.Chains {
		if got := st.Chains[n]; got == nil || !cmp.Equal(got.Rules, ch.Rules) {
			t.Errorf("chain %s: kernel lists %v, planned %q", n, got, ch.Rules)
		}
	}
	for n, set := range want.Sets {
		got := st.Sets[n]
		if got == nil {
			t.Errorf("set %s missing", n)
			continue
		}
		for k := range set.Elements {
			if _, ok := got.Elements[k]; !ok {
				t.Errorf("set %s: element %q not listed back (kernel has %v)", n, k, got.Elements)
			}
		}
	}
	if seen, err := c.Dial(c.DstAllowed, 8443); err != nil || seen != c.CellIP.String() {
		t.Errorf("allowed destination: saw %q, %v (want the cell's %s: masqueraded)", seen, err, c.CellIP)
	}
	if _, err := c.Dial(c.DstDenied, 8443); !netnstest.Refused(err) {
		t.Errorf("destination no rule allows: %v, want connection refused", err)
	}
	in(func() error { return NFTDelDualStack(ctx, k, "dual-1", ctrIP4) })
	var after *nft.State
	in(func() (err error) { after, err = k.Read(ctx); return err })
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("DEL did not restore the table (-before +after):\n%s", diff)
	}
}
