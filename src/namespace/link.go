package namespace

import (
	"crypto/rand"
	"net"
	"os"
)

// LinkExists reports whether the link exists in the caller's namespace.
func LinkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// DeleteLink deletes a link in the caller's namespace; one that is gone is
// fine.
func DeleteLink(name string) error {
	if !LinkExists(name) {
		return nil
	}
	_, err := Run("ip", "link", "del", name)
	if err != nil && !LinkExists(name) {
		return nil // its namespace took it (a veth goes with its peer)
	}
	return err
}

// Veth joins two namespaces with a veth pair named a (in nsA) and b (in
// nsB), addresses them (CIDR form, may be empty) and brings both up. A nil
// namespace means the caller's. Deleting either namespace removes the pair.
func Veth(nsA *NS, a, addrA string, nsB *NS, b, addrB string) error {
	if _, err := Run("ip", "link", "add", a, "type", "veth", "peer", "name", b); err != nil {
		return err
	}
	place := func(ns *NS, link, addr string) error {
		ip := func(args ...string) error {
			if ns != nil {
				_, err := ns.Run("ip", args...)
				return err
			}
			_, err := Run("ip", args...)
			return err
		}
		if ns != nil {
			if _, err := Run("ip", "link", "set", link, "netns", ns.Name); err != nil {
				return err
			}
		}
		if addr != "" {
			if err := ip("addr", "add", addr, "dev", link); err != nil {
				return err
			}
		}
		return ip("link", "set", link, "up")
	}
	if err := place(nsA, a, addrA); err != nil {
		return err
	}
	return place(nsB, b, addrB)
}

// AddBridge creates the underlay bridge with the caller's address on it
// (cidr, e.g. 10.244.0.1/24) and brings it up.
//
// The bridge is given a MAC address of its own (BridgeMAC) as it is made.
// Left to choose, a Linux bridge takes the lowest MAC address of its ports
// and changes it each time a port with a lower one joins; a cell that
// resolved the bridge's address before then keeps sending to the old MAC,
// now only another port's, and the bridge drops those frames until the
// cell's neighbour entry expires (up to a minute of a cell cut off from
// the control plane).
func AddBridge(name, cidr string) error {
	for _, args := range [][]string{
		{"link", "add", name, "address", BridgeMAC().String(), "type", "bridge"},
		{"addr", "add", cidr, "dev", name},
		{"link", "set", name, "up"},
	} {
		if _, err := Run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// BridgeMAC is a random unicast, locally administered MAC address: one no
// vendor's card has and no two bridges share in practice.
func BridgeMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// Attach joins ns to the bridge with a veth pair: outside stays in the
// caller's namespace on the bridge, inside goes into ns with cidr and a
// default route via gateway.
func Attach(bridge string, ns *NS, outside, inside, cidr, gateway string) error {
	if _, err := Run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns.Name); err != nil {
		return err
	}
	if _, err := Run("ip", "link", "set", outside, "master", bridge, "up"); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"addr", "add", cidr, "dev", inside},
		{"link", "set", inside, "up"},
		{"route", "add", "default", "via", gateway},
	} {
		if _, err := ns.Run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}
