package cniwrapper

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// cell6 is a dual-stack cell in namespaces for privileged tests: a cell
// namespace, one container namespace behind a veth (the container's /128
// routed via fe80::1 as silk-cni sets it up, but no static neighbour on
// the cell, so the cell must resolve the container with neighbour
// discovery through its input chain), and a destination namespace behind
// the cell's "underlay" interface with two IPv6 addresses.
type cell6 struct {
	cell, ctr, dst *netnstest.NS
	underlay       string // the cell's interface towards dst
	ctrIP          netip.Addr
	cellIP         netip.Addr // the cell's underlay IPv6 address
	dstAllowed     netip.Addr // a destination the test's netOut rules allow
	dstDenied      netip.Addr
}

func newCell6(t *testing.T, ctrIP netip.Addr) *cell6 {
	t.Helper()
	c := &cell6{
		cell: netnstest.New(t, "c6"), ctr: netnstest.New(t, "k6"), dst: netnstest.New(t, "d6"),
		underlay: netnstest.UniqueName("u6"), ctrIP: ctrIP,
		cellIP:     netip.MustParseAddr("2001:db8:9::1"),
		dstAllowed: netip.MustParseAddr("2001:db8:9::2"),
		dstDenied:  netip.MustParseAddr("2001:db8:9::3"),
	}
	host, ctrIf := netnstest.UniqueName("h6"), netnstest.UniqueName("e6")
	netnstest.Veth(t, c.cell, host, "", c.ctr, ctrIf, "")
	netnstest.Veth(t, c.cell, c.underlay, "", c.dst, netnstest.UniqueName("p6"), "")
	hostMAC := strings.TrimSpace(c.cell.Run(t, "cat", "/sys/class/net/"+host+"/address"))
	c.cell.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	c.cell.Run(t, "ip", "-6", "addr", "add", "fe80::1/64", "dev", host, "nodad")
	c.cell.Run(t, "ip", "-6", "route", "add", ctrIP.String()+"/128", "dev", host)
	c.cell.Run(t, "ip", "-6", "addr", "add", c.cellIP.String()+"/64", "dev", c.underlay, "nodad")
	c.ctr.Run(t, "ip", "-6", "addr", "add", ctrIP.String()+"/128", "dev", ctrIf, "nodad")
	c.ctr.Run(t, "ip", "-6", "neigh", "replace", "fe80::1", "lladdr", hostMAC, "dev", ctrIf, "nud", "permanent")
	c.ctr.Run(t, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", ctrIf)
	dstIf := strings.Fields(c.dst.Run(t, "ip", "-o", "link", "show", "type", "veth"))[1]
	dstIf = strings.TrimSuffix(strings.Split(dstIf, "@")[0], ":")
	for _, a := range []netip.Addr{c.dstAllowed, c.dstDenied} {
		c.dst.Run(t, "ip", "-6", "addr", "add", a.String()+"/64", "dev", dstIf, "nodad")
	}
	return c
}

// listen serves TCP on addr:port in the destination namespace, writing the
// peer address it sees to each connection.
func (c *cell6) listen(t *testing.T, port int) {
	t.Helper()
	var ln net.Listener
	if err := c.dst.Do(func() (err error) {
		ln, err = net.Listen("tcp6", fmt.Sprintf("[::]:%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
			_, _ = io.WriteString(conn, ap.Addr().String())
			conn.Close()
		}
	}()
}

// dial connects from the container and returns the source address the
// destination saw.
func (c *cell6) dial(dst netip.Addr, port int) (string, error) {
	var seen string
	err := c.ctr.Do(func() error {
		conn, err := net.DialTimeout("tcp6", netip.AddrPortFrom(dst, uint16(port)).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		b, err := io.ReadAll(conn)
		seen = string(b)
		return err
	})
	return seen, err
}

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
			c := newCell6(t, cfg.IPv6().Addr(ctrIP4))
			c.listen(t, 8443)
			plan, err := PlanAdd(cfg, Container{Handle: "dual-1", IP: ctrIP4, Workload: "app", Interfaces: []string{c.underlay}})
			if err != nil {
				t.Fatal(err)
			}
			netOut := []NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange(c.dstAllowed.String(), c.dstAllowed.String())}, Ports: []PortRange{{Start: 8443, End: 8443}}}}
			d := iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: t.TempDir() + "/iptables.lock"})
			before := saveAll(t, c.cell, d)
			if err := c.cell.Do(func() error {
				return d.Apply(t.Context(), plan.IPv6.Filter, plan.IPv6.NAT, plan.IPv6.Mangle, plan.IPv6.NetOut(netOut, nil))
			}); err != nil {
				t.Fatal(err)
			}
			if seen, err := c.dial(c.dstAllowed, 8443); err != nil || seen != c.cellIP.String() {
				t.Errorf("allowed destination: saw %q, %v (want the cell's %s: masqueraded)", seen, err, c.cellIP)
			}
			if _, err := c.dial(c.dstDenied, 8443); err == nil || !errors.Is(err, errRefused(err)) {
				t.Errorf("destination no rule allows: %v, want connection refused", err)
			}
			del := &DelPlanner{Handle: "dual-1", IP: c.ctrIP, NoMasquerade: cfg.IPv6().Prefix(), VTEPName: cfg.VTEPName}
			if err := c.cell.Do(func() error {
				_, err := d.UpdateTables(t.Context(), DelTables, del.Plan)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if got := saveAll(t, c.cell, d); fmt.Sprint(got) != fmt.Sprint(before) {
				t.Errorf("DEL left ip6tables:\n%v\nwant\n%v", got, before)
			}
		})
	}
}

// errRefused returns err when it is a refused connection (the rejects
// answer with port unreachable, which the dialer reports as refused), so
// errors.Is above reads as "was refused".
func errRefused(err error) error {
	if err != nil && strings.Contains(err.Error(), "connection refused") {
		return err
	}
	return errors.New("not refused")
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
	c := newCell6(t, cfg.IPv6().Addr(ctrIP4))
	c.listen(t, 8443)
	var k *nft.Kernel
	in := func(fn func() error) {
		t.Helper()
		if err := c.cell.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	in(func() (err error) { k, err = nft.New(); return err })
	// The skeleton alone is what DEL must leave.
	in(func() error { tx := k.NewTransaction(); nft.AddSkeleton(tx); return k.Run(ctx, tx) })
	var before *nft.State
	in(func() (err error) { before, err = k.Read(ctx); return err })

	plan, err := PlanAddNFT(cfg, Container{Handle: "dual-1", IP: ctrIP4, Workload: "app", Interfaces: []string{c.underlay}})
	if err != nil {
		t.Fatal(err)
	}
	in(func() error { return NFTAdd(ctx, k, plan) })
	if _, err := c.dial(c.dstAllowed, 8443); err == nil {
		t.Error("egress allowed before any netOut rule")
	}
	rs, _ := plan.NetOut(append([]NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange(c.dstAllowed.String(), c.dstAllowed.String())}, Ports: []PortRange{{Start: 8443, End: 8443}}}},
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
	if seen, err := c.dial(c.dstAllowed, 8443); err != nil || seen != c.cellIP.String() {
		t.Errorf("allowed destination: saw %q, %v (want the cell's %s: masqueraded)", seen, err, c.cellIP)
	}
	if _, err := c.dial(c.dstDenied, 8443); err == nil || !errors.Is(err, errRefused(err)) {
		t.Errorf("destination no rule allows: %v, want connection refused", err)
	}
	in(func() error { return NFTDel(ctx, k, "dual-1", ctrIP4) })
	var after *nft.State
	in(func() (err error) { after, err = k.Read(ctx); return err })
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("DEL did not restore the table (-before +after):\n%s", diff)
	}
}
