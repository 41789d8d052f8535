package netnstest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Cell6 is a dual-stack cell in namespaces for privileged tests: a cell
// namespace, one container namespace behind a veth (the container's /128
// routed via fe80::1 as silk-cni sets it up, but no static neighbour on
// the cell, so the cell must resolve the container with neighbour
// discovery through its input chain), and a destination namespace behind
// the cell's "underlay" interface with two IPv6 addresses.
type Cell6 struct {
	Cell, Ctr, Dst *NS
	Underlay       string // the cell's interface towards Dst
	CtrIP          netip.Addr
	CellIP         netip.Addr // the cell's underlay IPv6 address
	DstAllowed     netip.Addr // a destination address a test allows
	DstDenied      netip.Addr // one it does not
}

// NewCell6 builds the cell for a container with IPv6 address ctrIP; the
// namespaces and veths go when the test ends.
func NewCell6(t testing.TB, ctrIP netip.Addr) *Cell6 {
	t.Helper()
	c := &Cell6{
		Cell: New(t, "c6"), Ctr: New(t, "k6"), Dst: New(t, "d6"),
		Underlay: UniqueName("u6"), CtrIP: ctrIP,
		CellIP:     netip.MustParseAddr("2001:db8:9::1"),
		DstAllowed: netip.MustParseAddr("2001:db8:9::2"),
		DstDenied:  netip.MustParseAddr("2001:db8:9::3"),
	}
	host, ctrIf, dstIf := UniqueName("h6"), UniqueName("e6"), UniqueName("p6")
	Veth(t, c.Cell, host, "", c.Ctr, ctrIf, "")
	Veth(t, c.Cell, c.Underlay, "", c.Dst, dstIf, "")
	hostMAC := strings.TrimSpace(c.Cell.Run(t, "cat", "/sys/class/net/"+host+"/address"))
	c.Cell.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	c.Cell.Run(t, "ip", "-6", "addr", "add", "fe80::1/64", "dev", host, "nodad")
	c.Cell.Run(t, "ip", "-6", "route", "add", ctrIP.String()+"/128", "dev", host)
	c.Cell.Run(t, "ip", "-6", "addr", "add", c.CellIP.String()+"/64", "dev", c.Underlay, "nodad")
	c.Ctr.Run(t, "ip", "-6", "addr", "add", ctrIP.String()+"/128", "dev", ctrIf, "nodad")
	c.Ctr.Run(t, "ip", "-6", "neigh", "replace", "fe80::1", "lladdr", hostMAC, "dev", ctrIf, "nud", "permanent")
	c.Ctr.Run(t, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", ctrIf)
	for _, a := range []netip.Addr{c.DstAllowed, c.DstDenied} {
		c.Dst.Run(t, "ip", "-6", "addr", "add", a.String()+"/64", "dev", dstIf, "nodad")
	}
	return c
}

// Listen serves TCP on addr:port in the destination namespace, writing the
// peer address it sees to each connection.
func (c *Cell6) Listen(t testing.TB, port int) {
	t.Helper()
	var ln net.Listener
	if err := c.Dst.Do(func() (err error) {
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

// Dial connects from the container and returns the source address the
// destination saw.
func (c *Cell6) Dial(dst netip.Addr, port int) (string, error) {
	var seen string
	err := c.Ctr.Do(func() error {
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

// Refused reports whether err is a refused connection: a reject answering
// with port unreachable, which the dialer reports as refused (a drop times
// out instead).
func Refused(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection refused")
}

// Ping6 sends one ICMPv6 echo request from the container to dst and
// reports whether the echo reply came back within a second (a raw socket:
// the machines have no ping binary; the kernel fills in the checksum).
func (c *Cell6) Ping6(dst netip.Addr) (bool, error) {
	var ok bool
	err := c.Ctr.Do(func() error {
		conn, err := net.ListenPacket("ip6:ipv6-icmp", "::")
		if err != nil {
			return err
		}
		defer conn.Close()
		id := byte(time.Now().UnixNano())
		req := []byte{128, 0, 0, 0, 0x4e, id, 0, 1, 'n', 'e', 't', 'm', 'a', 'n'}
		if _, err := conn.WriteTo(req, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return nil // timed out: no reply
			}
			a, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
			if n >= 8 && buf[0] == 129 && buf[4] == 0x4e && buf[5] == id && a == dst {
				ok = true
				return nil
			}
		}
	})
	return ok, err
}
