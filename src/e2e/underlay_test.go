package e2e

import (
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/celltest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestDaemonRestartAfterHostJoins: a host joining the underlay (as
// TestOverlay's external host does) while the cells talk to the controller
// leaves every cell on the controller, so a silk-daemon restarted on a cell
// with containers renews its lease.
//
// The host's port has a MAC address lower than any other. A bridge with no
// address of its own took it, and a cell that had resolved the
// controller's address to another cell's port in the second before (an
// entry that young is not overridden by the ARP requests this namespace
// sends for other cells) kept sending there; the bridge dropped those
// frames until the entry expired, and the restarted daemon exited with
// "renew subnet lease with containers" after its request to the controller
// timed out: the "renewal that never arrived" celltest used to work around
// by starting the daemon again.
func TestDaemonRestartAfterHostJoins(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 2})
	for _, c := range lab.Cells {
		c.AddContainer(t, celltest.ContainerOptions{})
	}
	// The cell under test sends to another port's address, if the bridge
	// has taken one.
	bridgeMAC := linkField(t, nil, lab.Bridge, "address")
	var cell *celltest.Cell
	var others []*celltest.Cell
	for _, c := range lab.Cells {
		if cell == nil && portMAC(t, lab, c) != bridgeMAC {
			cell = c
		} else {
			others = append(others, c)
		}
	}
	controller := net.JoinHostPort(lab.RootIP, strconv.Itoa(lab.APIPort))
	cell.NS.Run(t, "ip", "neigh", "flush", "dev", cell.Iface)
	if err := answers(cell.NS, controller); err != nil {
		t.Fatalf("cell %d to the controller: %v", cell.Index, err)
	}

	host := netnstest.New(t, "h")
	port := netnstest.UniqueName("nmu")
	t.Cleanup(func() { netnstest.Run(t, "ip", "link", "del", port) })
	netnstest.Run(t, "ip", "link", "add", port, "address", "00:00:5e:00:53:01", "type", "veth", "peer", "name", "ul0", "netns", host.Name)
	netnstest.Run(t, "ip", "link", "set", port, "master", lab.Bridge, "up")
	// This namespace answers the other cells' next polls.
	for _, c := range others {
		if err := answers(nil, net.JoinHostPort(c.UnderlayIP, "9")); err != nil {
			t.Fatalf("to cell %d: %v", c.Index, err)
		}
	}

	cell.KillDaemon()
	cell.StartDaemon() // fails the test if the daemon exits
}

// portMAC is the MAC address of the cell's port on the underlay bridge.
func portMAC(t *testing.T, lab *celltest.Lab, c *celltest.Cell) string {
	peer := linkField(t, c.NS, c.Iface, "link_index")
	var ports []map[string]any
	if err := json.Unmarshal([]byte(netnstest.Run(t, "ip", "-j", "link", "show", "master", lab.Bridge)), &ports); err != nil {
		t.Fatal(err)
	}
	for _, p := range ports {
		if p["ifindex"] == peer {
			return p["address"].(string)
		}
	}
	t.Fatalf("cell %d has no port on %s", c.Index, lab.Bridge)
	return ""
}

// linkField is one field of `ip -j link show dev link` (in ns when not nil).
func linkField(t *testing.T, ns *netnstest.NS, link, field string) any {
	args := []string{"-j", "link", "show", "dev", link}
	var out string
	if ns == nil {
		out = netnstest.Run(t, "ip", args...)
	} else {
		out = ns.Run(t, "ip", args...)
	}
	var links []map[string]any
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
	return links[0][field]
}

// answers tells whether a TCP connection to addr (from inside ns, when not
// nil) is answered within two seconds, a refusal included.
func answers(ns *netnstest.NS, addr string) error {
	dial := func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			c.Close()
		}
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil
		}
		return err
	}
	if ns == nil {
		return dial()
	}
	return ns.Do(dial)
}
