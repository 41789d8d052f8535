// Package nfttest builds a small cell for nftables verdict tests: a "cell"
// namespace that forwards between "container" namespaces (each on its own
// veth with a /32 and 169.254.0.1 as gateway, as silk wires them) and an
// "outside" namespace on an underlay veth, plus TCP listeners and a dial
// that reports whether a connection got through. Every namespace and link
// it creates goes when the test ends (deleting a namespace deletes its
// veths).
package nfttest

import (
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// Gateway is the cell-side address of every container veth.
const Gateway = "169.254.0.1"

// Cell is a cell namespace with its outside.
type Cell struct {
	NS *netnstest.NS
	// Underlay is the cell's interface toward Outside (its "eth0").
	Underlay string
	// UnderlayIP is the cell's address on it (10.244.0.1).
	UnderlayIP netip.Addr
	Outside    *netnstest.NS
}

// Container is a container namespace on a Cell.
type Container struct {
	NS *netnstest.NS
	IP netip.Addr
	// HostVeth is the cell-side interface.
	HostVeth string
}

// NewCell makes a forwarding cell and an outside namespace holding
// 10.244.0.2 and the given extra addresses (destinations for egress tests),
// routing the overlay 10.255.0.0/16 back through the cell.
func NewCell(tb testing.TB, outsideIPs ...string) *Cell {
	tb.Helper()
	netnstest.RequireRoot(tb)
	c := &Cell{NS: netnstest.New(tb, "cell"), Outside: netnstest.New(tb, "out"), UnderlayIP: netip.MustParseAddr("10.244.0.1")}
	c.NS.Run(tb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	c.Underlay = netnstest.UniqueName("u")
	out := netnstest.UniqueName("o")
	netnstest.Veth(tb, c.NS, c.Underlay, "10.244.0.1/24", c.Outside, out, "10.244.0.2/24")
	for _, ip := range outsideIPs {
		c.Outside.Run(tb, "ip", "addr", "add", ip+"/32", "dev", out)
	}
	c.Outside.Run(tb, "ip", "route", "add", "10.255.0.0/16", "via", "10.244.0.1")
	return c
}

// AddContainer adds a container namespace with address ip.
func (c *Cell) AddContainer(tb testing.TB, ip string) *Container {
	tb.Helper()
	ctr := &Container{NS: netnstest.New(tb, "ctr"), IP: netip.MustParseAddr(ip), HostVeth: netnstest.UniqueName("s")}
	inner := netnstest.UniqueName("c")
	netnstest.Veth(tb, c.NS, ctr.HostVeth, Gateway+"/32", ctr.NS, inner, ip+"/32")
	ctr.NS.Run(tb, "ip", "route", "add", Gateway, "dev", inner)
	ctr.NS.Run(tb, "ip", "route", "add", "default", "via", Gateway)
	c.NS.Run(tb, "ip", "route", "add", ip+"/32", "dev", ctr.HostVeth)
	return ctr
}

// Do runs fn inside the cell namespace, failing the test on error.
func (c *Cell) Do(tb testing.TB, fn func() error) {
	tb.Helper()
	if err := c.NS.Do(fn); err != nil {
		tb.Fatal(err)
	}
}

// Listen accepts (and closes) TCP connections on addr inside ns until the
// test ends.
func Listen(tb testing.TB, ns *netnstest.NS, addr string) {
	tb.Helper()
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
}

// Connects reports whether a TCP connection from ns to addr completes
// within a second (a rejected one fails at once; a dropped one times out).
func Connects(tb testing.TB, ns *netnstest.NS, addr string) bool {
	tb.Helper()
	var conn net.Conn
	err := ns.Do(func() (err error) { conn, err = net.DialTimeout("tcp", addr, time.Second); return err })
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// KernelLog reads the kernel log (/dev/kmsg) from the moment it is called:
// what LOG and nft log rules print, in every namespace once
// netnstest.LogAllNetns is on.
type KernelLog struct {
	f *os.File
}

// OpenKernelLog opens /dev/kmsg at its end; it is closed when the test ends.
func OpenKernelLog(tb testing.TB) *KernelLog {
	tb.Helper()
	f, err := os.OpenFile("/dev/kmsg", os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		tb.Fatal(err)
	}
	return &KernelLog{f: f}
}

// WaitFor returns the first new kernel log line containing substr, or ""
// when none comes within timeout.
func (k *KernelLog) WaitFor(substr string, timeout time.Duration) string {
	buf := make([]byte, 8192)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		n, err := k.f.Read(buf)
		if err != nil {
			// EAGAIN: nothing new yet; EPIPE: records were overwritten.
			time.Sleep(20 * time.Millisecond)
			continue
		}
		if line := string(buf[:n]); strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}

// CheckFiles runs `nft -c -f` on every file matching pattern inside a
// fresh namespace: golden files in nft list form must be valid nft input
// that the kernel accepts.
func CheckFiles(t *testing.T, pattern string) {
	t.Helper()
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "chk")
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s (%v)", pattern, err)
	}
	for _, f := range files {
		if out, err := ns.Command("nft", "-c", "-f", f).CombinedOutput(); err != nil {
			t.Errorf("%s: %v: %s", f, err, out)
		}
	}
}
