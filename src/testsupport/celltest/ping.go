package celltest

import (
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// Ping sends one ICMP (or ICMPv6) echo request from inside ns to addr and
// waits up to two seconds for the reply, over a raw socket (the test runs
// as root; the cells have no ping binary).
func Ping(ns *netnstest.NS, addr string) error {
	dst := net.ParseIP(addr)
	if dst == nil {
		return fmt.Errorf("ping: %q is not an IP address", addr)
	}
	network, typ, reply, proto := "ip4:icmp", icmp.Type(ipv4.ICMPTypeEcho), icmp.Type(ipv4.ICMPTypeEchoReply), 1
	if dst.To4() == nil {
		network, typ, reply, proto = "ip6:ipv6-icmp", ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply, 58
	}
	return ns.Do(func() error {
		conn, err := icmp.ListenPacket(network, "")
		if err != nil {
			return fmt.Errorf("ping: %w", err)
		}
		defer conn.Close()
		id := os.Getpid() & 0xffff
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("netman")}}
		b, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
		if err != nil {
			return err
		}
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst}); err != nil {
			return fmt.Errorf("ping %s: %w", addr, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		_ = conn.SetReadDeadline(deadline)
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return fmt.Errorf("ping %s: no reply: %w", addr, err)
			}
			m, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil || m.Type != reply || !from.(*net.IPAddr).IP.Equal(dst) {
				continue
			}
			if e, ok := m.Body.(*icmp.Echo); ok && e.ID == id {
				return nil
			}
		}
	})
}
