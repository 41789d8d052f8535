package e2e

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

var overlay6Net = overlay6.MustParse(overlay6.DefaultNetwork)

// vtep6 is a dual-stack cell's VTEP IPv6 address (its lease's first
// address mapped into the IPv6 overlay).
func vtep6(t *testing.T, c *celltest.Cell) string {
	t.Helper()
	return overlay6Net.Addr(netip.MustParsePrefix(c.OverlaySubnet()).Addr()).String()
}

// TestDualStackDataPath is issue 18's silk data path on three cells: cells
// 1 and 2 dual-stack, cell 3 left IPv4-only (a rollout half done), the real
// silk-daemon (VTEP with GBP) in each and containers made by the real
// silk-cni. Containers on different cells talk TCP and ping over IPv6, the
// packet mark crosses cells in the GBP header for IPv6 as for IPv4, and
// the IPv4-only cell keeps talking IPv4 to both.
func TestDualStackDataPath(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 3, IPv6: true, IPv4OnlyCells: []int{3}})
	c1, c2, c3 := lab.Cells[0], lab.Cells[1], lab.Cells[2]
	a, b, d := c1.AddSilkContainer(t), c2.AddSilkContainer(t), c3.AddSilkContainer(t)

	t.Run("addresses are derived from the IPv4 ones", func(t *testing.T) {
		for _, ctr := range []*celltest.Container{a, b} {
			if want := overlay6Net.Addr(netip.MustParseAddr(ctr.IP)).String(); ctr.IP6 != want {
				t.Errorf("container %s on cell %d has IPv6 %q, want %s", ctr.IP, ctr.Cell.Index, ctr.IP6, want)
			}
		}
		if d.IP6 != "" {
			t.Errorf("container on the IPv4-only cell got IPv6 %s", d.IP6)
		}
	})

	t.Run("every dual-stack cell routes every other lease over IPv6; the IPv4-only cell none", func(t *testing.T) {
		for _, other := range []*celltest.Cell{c2, c3} {
			want := overlay6Net.Prefix6(netip.MustParsePrefix(other.OverlaySubnet())).String() + " via " + vtep6(t, other)
			eventually(t, 10*time.Second, func() error {
				if r := c1.Routes6(); !strings.Contains(r, want) {
					return fmt.Errorf("cell 1 IPv6 routes lack %q:\n%s", want, r)
				}
				return nil
			})
		}
		if r := c3.Routes6(); strings.Contains(r, " via ") {
			t.Errorf("IPv4-only cell 3 has IPv6 overlay routes:\n%s", r)
		}
		if info, err := c3.NetworkInfo(); err != nil || info["ipv6_overlay_network"] != nil {
			t.Errorf("IPv4-only cell 3 network info %v %v", info, err)
		}
	})

	t.Run("cell VTEPs ping each other over IPv6", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error { return celltest.Ping(c1.NS, vtep6(t, c2)) })
	})

	celltest.Listen(t, b.NS, "tcp", "["+b.IP6+"]:8080")
	celltest.Listen(t, a.NS, "tcp", "["+a.IP6+"]:8080")
	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	celltest.Listen(t, a.NS, "tcp", a.IP+":8080")
	celltest.Listen(t, d.NS, "tcp", d.IP+":8080")

	t.Run("containers on different cells talk TCP and ping over IPv6", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", "["+b.IP6+"]:8080", "a to b over IPv6") })
		eventually(t, 5*time.Second, func() error { return celltest.Echo(b.NS, "tcp", "["+a.IP6+"]:8080", "b to a over IPv6") })
		eventually(t, 5*time.Second, func() error { return celltest.Ping(a.NS, b.IP6) })
		eventually(t, 5*time.Second, func() error { return celltest.Ping(b.NS, a.IP6) })
	})

	t.Run("the GBP header carries the mark of IPv6 packets across cells", func(t *testing.T) {
		c1.NS.Run(t, "ip6tables", "-w", "-t", "mangle", "-A", "POSTROUTING", "-s", a.IP6, "-d", b.IP6, "-j", "MARK", "--set-xmark", "0x5/0xffff")
		c2.NS.Run(t, "ip6tables", "-w", "-N", "nm-test-gbp")
		c2.NS.Run(t, "ip6tables", "-w", "-A", "nm-test-gbp", "-s", a.IP6, "-m", "mark", "--mark", "0x5", "-j", "ACCEPT")
		c2.NS.Run(t, "ip6tables", "-w", "-I", "FORWARD", "1", "-i", "silk-vtep", "-j", "nm-test-gbp")
		if err := celltest.Echo(a.NS, "tcp", "["+b.IP6+"]:8080", "marked"); err != nil {
			t.Fatal(err)
		}
		out := c2.NS.Run(t, "ip6tables", "-w", "-L", "nm-test-gbp", "-v", "-n", "-x")
		var pkts int
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "mark match 0x5") {
				fmt.Sscan(strings.TrimSpace(l), &pkts)
			}
		}
		if pkts == 0 {
			t.Errorf("no IPv6 packet arrived on cell 2 with mark 0x5:\n%s", out)
		}
	})

	t.Run("the IPv4-only cell keeps talking IPv4 to dual-stack cells", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error { return celltest.Echo(d.NS, "tcp", a.IP+":8080", "d to a") })
		eventually(t, 5*time.Second, func() error { return celltest.Echo(b.NS, "tcp", d.IP+":8080", "b to d") })
		eventually(t, 5*time.Second, func() error { return celltest.Ping(d.NS, b.IP) })
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "a to b over IPv4") })
	})
}

// TestDualStackPolicy is the lab scenario through the whole CNI chain
// (cni-wrapper-plugin delegating to silk-cni) with the real policy servers
// and agents on two dual-stack cells and an IPv4-only one: a policy
// created through the external API lets one app reach another over IPv6
// as over IPv4, and the IPv4-only cell's app reaches it over IPv4. (That
// IPv6 is denied without a policy is the c2c enforcement's scenario,
// src/agent/c2c and the wrapper's, issue 18.)
func TestDualStackPolicy(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 3, Policy: true, IPv6: true, IPv4OnlyCells: []int{3}})
	c1, c2, c3 := lab.Cells[0], lab.Cells[1], lab.Cells[2]
	a := c1.AddContainer(t, app("app-a", "space-1"))
	b := c2.AddContainer(t, app("app-b", "space-1"))
	d := c3.AddContainer(t, app("app-d", "space-1"))
	if a.IP6 == "" || b.IP6 == "" || d.IP6 != "" {
		t.Fatalf("IPv6 addresses through the chain: a %q b %q d %q", a.IP6, b.IP6, d.IP6)
	}
	celltest.Listen(t, b.NS, "tcp", "["+b.IP6+"]:8080")
	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	lab.CreatePolicies(t, policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8080), policy.NewPolicy("app-d", "app-b", "tcp", 8080, 8080))
	eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "a to b over IPv4") })
	eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", "["+b.IP6+"]:8080", "a to b over IPv6") })
	eventually(t, 10*time.Second, func() error { return celltest.Echo(d.NS, "tcp", b.IP+":8080", "d to b over IPv4") })
}
