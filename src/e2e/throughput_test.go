package e2e

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/celltest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// BenchmarkThroughput measures TCP goodput container-to-container across two
// cells through silk's VXLAN overlay, and between the same two container
// namespaces joined directly by a plain veth, in the same run. It reports
// both in Gbit/s and their ratio (target ≥ 0.9). It runs on each
// enforcement backend, and on each with a NOTRACK rule for the VXLAN port
// (UDP 4789) on both cells, so the encapsulated packets skip conntrack.
func BenchmarkThroughput(b *testing.B) {
	for _, backend := range []string{celltest.IPTables, celltest.NFTables} {
		for _, notrack := range []bool{false, true} {
			name := backend
			if notrack {
				name += "-notrack"
			}
			b.Run(name, func(b *testing.B) { benchThroughput(b, backend, notrack) })
		}
	}
}

// vxlanNotrack is a table of the benchmark's own that exempts the cell's
// VXLAN packets, sent and received, from connection tracking.
const vxlanNotrack = `table inet nmbench-notrack {
	chain prerouting { type filter hook prerouting priority raw; udp dport 4789 notrack; }
	chain output { type filter hook output priority raw; udp dport 4789 notrack; }
}
`

func benchThroughput(b *testing.B, backend string, notrack bool) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 2, Backend: backend})
	src := lab.Cells[0].AddContainer(b, celltest.ContainerOptions{})
	dst := lab.Cells[1].AddContainer(b, celltest.ContainerOptions{})
	celltest.AllowC2C(b, src, dst, 0x7, "tcp", 5001)
	if notrack {
		for _, c := range lab.Cells {
			cmd := c.NS.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(vxlanNotrack)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("cell %d: NOTRACK table: %v: %s", c.Index, err, out)
			}
		}
	}
	// The baseline: the same namespaces, joined by a veth of their own.
	netnstest.Veth(b, src.NS, "direct0", "10.250.0.1/30", dst.NS, "direct1", "10.250.0.2/30")

	overlay := sink(b, dst.NS, dst.IP+":5001")
	direct := sink(b, dst.NS, "10.250.0.2:5001")
	const perRun = 2 * time.Second
	var overlayBits, directBits float64
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		directBits += send(b, src.NS, direct, perRun)
		overlayBits += send(b, src.NS, overlay, perRun)
	}
	b.StopTimer()
	runs := float64(b.N) * perRun.Seconds()
	b.ReportMetric(overlayBits/runs/1e9, "overlay-Gbit/s")
	b.ReportMetric(directBits/runs/1e9, "veth-Gbit/s")
	b.ReportMetric(overlayBits/directBits, "ratio")
}

// sink accepts connections inside ns and discards what arrives.
func sink(b *testing.B, ns *netnstest.NS, addr string) string {
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", addr); return err }); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return addr
}

// send writes as fast as it can from ns to addr for d and returns the bits sent.
func send(b *testing.B, ns *netnstest.NS, addr string, d time.Duration) float64 {
	conn, err := celltest.Dial(ns, "tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 256<<10)
	var sent int64
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := conn.Write(buf)
		sent += int64(n)
		if err != nil {
			b.Fatal(err)
		}
	}
	return float64(sent) * 8
}

// BenchmarkThroughputDualStack measures TCP goodput container-to-container
// across two dual-stack cells through the overlay over IPv4 and over IPv6
// (the same containers, the same VTEPs: IPv6 inside VXLAN over the IPv4
// underlay), and over a plain veth between the same namespaces, in the
// same run. The containers are made by silk-cni alone (no wrapper
// enforcement on either family), so the two overlay numbers differ only
// by the inner family. It reports Gbit/s for each and the IPv6/IPv4 ratio.
func BenchmarkThroughputDualStack(b *testing.B) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 2, IPv6: true})
	src := lab.Cells[0].AddSilkContainer(b)
	dst := lab.Cells[1].AddSilkContainer(b)
	netnstest.Veth(b, src.NS, "direct0", "10.250.0.1/30", dst.NS, "direct1", "10.250.0.2/30")

	over4 := sink(b, dst.NS, dst.IP+":5001")
	over6 := sink(b, dst.NS, "["+dst.IP6+"]:5001")
	direct := sink(b, dst.NS, "10.250.0.2:5001")
	const perRun = 2 * time.Second
	var bits4, bits6, directBits float64
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		directBits += send(b, src.NS, direct, perRun)
		bits4 += send(b, src.NS, over4, perRun)
		bits6 += send(b, src.NS, over6, perRun)
	}
	b.StopTimer()
	runs := float64(b.N) * perRun.Seconds()
	b.ReportMetric(bits4/runs/1e9, "overlay4-Gbit/s")
	b.ReportMetric(bits6/runs/1e9, "overlay6-Gbit/s")
	b.ReportMetric(directBits/runs/1e9, "veth-Gbit/s")
	b.ReportMetric(bits6/bits4, "v6/v4")
}
