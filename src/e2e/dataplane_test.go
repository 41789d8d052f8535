package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/celltest"
)

// TestOverlay is issue 3's scenario on three cells: cross-cell and same-cell
// traffic, port mappings, netout rules, daemon restarts, lease release and
// clean deletion.
func TestOverlay(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 3})
	c1, c2, c3 := lab.Cells[0], lab.Cells[1], lab.Cells[2]

	subnets := map[string]bool{}
	for _, c := range lab.Cells {
		subnets[c.OverlaySubnet()] = true
	}
	if len(subnets) != 3 {
		t.Fatalf("cells share a lease: %v", subnets)
	}

	extNS, extIP := lab.NewHost(200)
	celltest.Listen(t, extNS, "tcp", extIP+":8080")
	celltest.Listen(t, extNS, "tcp", extIP+":9090")

	a := c1.AddContainer(t, celltest.ContainerOptions{
		NetOutRules: []map[string]any{{
			"protocol": 1, "networks": []map[string]string{{"start": extIP, "end": extIP}},
			"ports": []map[string]int{{"start": 8080, "end": 8080}},
		}},
	})
	b := c3.AddContainer(t, celltest.ContainerOptions{PortMappings: []celltest.PortMapping{{HostPort: 61000, ContainerPort: 8080}}})
	local := c1.AddContainer(t, celltest.ContainerOptions{})

	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	celltest.Listen(t, b.NS, "udp", b.IP+":8081")
	celltest.Listen(t, local.NS, "tcp", local.IP+":8080")

	t.Run("overlay isolation denies c2c traffic without a policy", func(t *testing.T) {
		if err := celltest.Echo(a.NS, "tcp", b.IP+":8080", "hi"); err == nil {
			t.Fatal("container reached another app's container with no policy")
		}
	})

	celltest.AllowC2C(t, a, b, 0x5, "tcp", 8080)
	celltest.AllowC2C(t, a, b, 0x5, "udp", 8081)
	celltest.AllowC2C(t, a, local, 0x5, "tcp", 8080)

	t.Run("cell 1 reaches cell 3 over TCP and UDP", func(t *testing.T) {
		eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "tcp across cells") })
		eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "udp", b.IP+":8081", "udp across cells") })
	})

	t.Run("a container reaches its own cell's container", func(t *testing.T) {
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", local.IP+":8080", "same cell") })
	})

	t.Run("a port mapping on the underlay address reaches the container", func(t *testing.T) {
		eventually(t, 5*time.Second, func() error {
			return celltest.Echo(extNS, "tcp", fmt.Sprintf("%s:61000", c3.UnderlayIP), "via port mapping")
		})
	})

	t.Run("netout allows the listed destination and rejects another", func(t *testing.T) {
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", extIP+":8080", "out") })
		if err := celltest.Echo(a.NS, "tcp", extIP+":9090", "out"); err == nil {
			t.Fatal("netout let through a destination no rule allows")
		} else if !strings.Contains(err.Error(), "refused") {
			t.Fatalf("denied egress should be rejected (connection refused), got %v", err)
		}
	})

	t.Run("restarting silk-daemon keeps established connections", func(t *testing.T) {
		conn, err := celltest.Dial(a.NS, "tcp", b.IP+":8080")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := celltest.EchoOn(conn, "before"); err != nil {
			t.Fatal(err)
		}
		before := c1.Routes()
		c1.KillDaemon()
		c3.KillDaemon()
		if err := celltest.EchoOn(conn, "while down"); err != nil {
			t.Fatalf("connection broke with the daemons down: %v", err)
		}
		c1.StartDaemon()
		c3.StartDaemon()
		if err := celltest.EchoOn(conn, "after"); err != nil {
			t.Fatalf("connection broke across the restart: %v", err)
		}
		if after := c1.Routes(); after != before {
			t.Errorf("routes changed across the restart:\nbefore %s\nafter %s", before, after)
		}
	})

	t.Run("a released lease leaves every other cell within two polls", func(t *testing.T) {
		gone := c2.OverlaySubnet()
		for _, c := range []*celltest.Cell{c1, c3} {
			if !strings.Contains(c.Routes(), gone) {
				t.Fatalf("cell %d has no route to %s:\n%s", c.Index, gone, c.Routes())
			}
		}
		c2.StopDaemon()
		c2.Teardown()
		start := time.Now()
		eventually(t, 2*time.Second+500*time.Millisecond, func() error {
			for _, c := range []*celltest.Cell{c1, c3} {
				if routes := c.Routes(); strings.Contains(routes, gone) {
					return fmt.Errorf("cell %d still routes %s:\n%s", c.Index, gone, routes)
				}
			}
			return nil
		})
		t.Logf("released lease gone from every cell after %v", time.Since(start).Round(time.Millisecond))
	})

	t.Run("DEL leaves nothing behind", func(t *testing.T) {
		before := map[string]string{}
		for _, table := range []string{"filter", "nat", "mangle"} {
			before[table] = c3.IptablesSave(t, table)
		}
		if !strings.Contains(before["filter"], b.ID) {
			t.Fatalf("no chain for %s in:\n%s", b.ID, before["filter"])
		}
		b.Delete(t)
		for _, table := range []string{"filter", "nat", "mangle"} {
			// The stand-in policy chain is the test's own, not the plugin's.
			var after []string
			for _, line := range strings.Split(c3.IptablesSave(t, table), "\n") {
				if !strings.Contains(line, "nm-test-policy") {
					after = append(after, line)
				}
			}
			if joined := strings.Join(after, "\n"); strings.Contains(joined, b.ID) || strings.Contains(joined, b.IP+"/32") {
				t.Errorf("%s table still mentions the container:\n%s", table, joined)
			}
		}
		for _, link := range c3.Links(t) {
			if strings.HasPrefix(link, "s-") {
				t.Errorf("host veth %s left behind", link)
			}
		}
		if routes := c3.NS.Run(t, "ip", "-4", "route"); strings.Contains(routes, b.IP+" ") {
			t.Errorf("route to %s left behind:\n%s", b.IP, routes)
		}
		ipam := filepath.Join(c3.Dir, "host-local", "ipam", "silk", b.IP)
		if _, err := os.Stat(ipam); !os.IsNotExist(err) {
			t.Errorf("IPAM reservation %s left behind (%v)", ipam, err)
		}
		if _, err := c3.CNI("DEL", b.ID, b.NS.Path, celltest.ContainerOptions{}); err != nil {
			t.Errorf("second DEL: %v", err)
		}
	})
}

func eventually(t *testing.T, within time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for {
		if err = check(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %v: %v", within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
