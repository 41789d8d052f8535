package namespace_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestBridgeKeepsItsMAC: the underlay bridge keeps the address it was made
// with while ports with lower MAC addresses join it, so a cell that
// resolved the host's underlay address before a later cell joined still
// reaches it. A bridge left to pick its own address takes its lowest
// port's, and the earlier cell's frames to the old one were dropped.
func TestBridgeKeepsItsMAC(t *testing.T) {
	netnstest.RequireRoot(t)
	host := netnstest.New(t, "brh")
	const prefix, bridge = "10.244.77.", "nmbr0"
	if err := host.Do(func() error { return namespace.AddBridge(bridge, prefix+"1/24") }); err != nil {
		t.Fatal(err)
	}
	made := linkMAC(t, host, bridge)
	if mac, err := net.ParseMAC(made); err != nil || mac[0]&0x01 != 0 || mac[0]&0x02 == 0 {
		t.Fatalf("bridge address %s (%v): want a unicast, locally administered one", made, err)
	}

	// Each port joins with a random address and is then given its own,
	// lower than any random one; the third is the lowest of all.
	portMACs := []string{"00:00:5e:00:53:20", "00:00:5e:00:53:30", "00:00:5e:00:53:10"}
	var cells []*netnstest.NS
	type step struct {
		Joined    int
		BridgeMAC string
		Reached   []bool // by cell
	}
	var got, want []step
	for i, portMAC := range portMACs {
		cell := netnstest.New(t, "brc")
		cells = append(cells, cell)
		port := fmt.Sprintf("nmp%d", i+1)
		if err := host.Do(func() error {
			return namespace.Attach(bridge, cell.NS, port, "ul0", fmt.Sprintf("%s%d/24", prefix, 10+i), prefix+"1")
		}); err != nil {
			t.Fatal(err)
		}
		host.Run(t, "ip", "link", "set", port, "address", portMAC)
		s := step{Joined: i + 1, BridgeMAC: linkMAC(t, host, bridge)}
		// Every cell so far talks to the host: the newest one resolves
		// its address now, the others have it resolved already.
		w := step{Joined: i + 1, BridgeMAC: made}
		for _, c := range cells {
			s.Reached = append(s.Reached, reaches(c, prefix+"1:9"))
			w.Reached = append(w.Reached, true)
		}
		got, want = append(got, s), append(want, w)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("as cells joined the bridge (-want +got):\n%s", diff)
	}
}

// TestBridgeMACsDiffer: two bridges get two addresses.
func TestBridgeMACsDiffer(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		mac := namespace.BridgeMAC()
		if mac[0]&0x03 != 0x02 {
			t.Fatalf("%s: want a unicast, locally administered address", mac)
		}
		if seen[mac.String()] {
			t.Fatalf("%s twice in 1000", mac)
		}
		seen[mac.String()] = true
	}
}

// linkMAC is the link's MAC address inside ns.
func linkMAC(t *testing.T, ns *netnstest.NS, link string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	out := ns.Run(t, "ip", "-j", "link", "show", "dev", link)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j link show dev %s: %v: %s", link, err, out)
	}
	return links[0].Address
}

// reaches tells whether a TCP connection from inside ns to addr gets an
// answer within a second: a refusal is an answer.
func reaches(ns *netnstest.NS, addr string) bool {
	err := ns.Do(func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	return err == nil || errors.Is(err, syscall.ECONNREFUSED)
}
