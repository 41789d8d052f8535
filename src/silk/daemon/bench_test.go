package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// benchLeases are the leases of a large foundation: a /11 overlay of /22s
// (2,047 block leases, upstream's documented large layout). The local cell
// holds the first block; 2,000 other cells follow.
const benchRemotes = 2000

func benchLeases(b *testing.B) (local lease.Lease, remotes []lease.Lease, overlay netip.Prefix) {
	b.Helper()
	pool, err := lease.NewPool("10.224.0.0/11", 22)
	if err != nil {
		b.Fatal(err)
	}
	mk := func(i int) lease.Lease {
		subnet := pool.Block(i)
		mac, err := lease.HardwareAddr(subnet)
		if err != nil {
			b.Fatal(err)
		}
		return lease.Lease{UnderlayIP: fmt.Sprintf("10.244.%d.%d", i/250, i%250+2), OverlaySubnet: subnet, OverlayHardwareAddr: mac}
	}
	local = mk(0)
	local.UnderlayIP = "10.244.0.1"
	for i := 1; i <= benchRemotes; i++ {
		remotes = append(remotes, mk(i))
	}
	return local, remotes, pool.Network()
}

// benchVTEP creates the VTEP for local in a fresh cell and returns a
// converger writing through a counting wrapper.
func benchVTEP(b *testing.B, cell *testCell, local lease.Lease, overlay netip.Prefix) (*Converger, *countingKernel) {
	b.Helper()
	cfg := Config{
		UnderlayIP: cell.underlayIP, SubnetPrefixLength: 22, OverlayNetwork: OverlayNetwork{overlay.String()},
		VTEPName: "silk-vtep", VNI: 1, VTEPPort: 4789,
	}
	spec, err := vtepSpec(cfg, local)
	if err != nil {
		b.Fatal(err)
	}
	if err := CreateVTEP(cell.nl, spec); err != nil {
		b.Fatal(err)
	}
	state, err := ReadVTEP(cell.nl, "silk-vtep")
	if err != nil {
		b.Fatal(err)
	}
	k := &countingKernel{Kernel: cell.nl}
	return &Converger{
		Kernel: k, LinkIndex: state.Index,
		Planner: Planner{Local: netip.MustParsePrefix(local.OverlaySubnet), Overlay: overlay},
	}, k
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-us/op")
}

// BenchmarkConvergeFirst is a cell joining a foundation of 2,000 cells: one
// converge from an empty VTEP (6,000 writes).
func BenchmarkConvergeFirst(b *testing.B) {
	cell := newTestCell(b)
	local, remotes, overlay := benchLeases(b)
	logHostGCThresh(b)
	var writes int
	var elapsed time.Duration
	cpu := time.Duration(0)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_ = DeleteVTEP(cell.nl, "silk-vtep") // takes every route and neighbour with it
		c, k := benchVTEP(b, cell, local, overlay)
		cpu0, t0 := cpuTime(), time.Now()
		b.StartTimer()
		if _, err := c.Converge(append([]lease.Lease{local}, remotes...)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		elapsed += time.Since(t0)
		cpu += cpuTime() - cpu0
		writes += k.Writes()
		b.StartTimer()
	}
	b.StopTimer()
	arp, err := cell.nl.NeighList(mustIndex(b, cell), netlink.FAMILY_V4)
	if err != nil || len(arp) != benchRemotes {
		b.Fatalf("%d ARP entries on the VTEP (%v), want %d", len(arp), err, benchRemotes)
	}
	b.ReportMetric(float64(writes)/float64(b.N), "writes/op")
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	_ = elapsed
}

// BenchmarkConvergeChange is a poll after one cell changed, on a VTEP holding
// 2,000 cells: "moved" re-homes a cell to another underlay IP, "joined-left"
// alternately adds and removes a cell.
func BenchmarkConvergeChange(b *testing.B) {
	cell := newTestCell(b)
	local, remotes, overlay := benchLeases(b)
	c, k := benchVTEP(b, cell, local, overlay)
	all := append([]lease.Lease{local}, remotes...)
	if _, err := c.Converge(all); err != nil {
		b.Fatal(err)
	}

	moved := append([]lease.Lease(nil), all...)
	moved[1000].UnderlayIP = "10.244.99.99"
	without := append(append([]lease.Lease(nil), all[:1000]...), all[1001:]...)

	for _, bc := range []struct {
		name string
		a, b []lease.Lease
	}{
		{"moved", moved, all},
		{"joined-left", without, all},
	} {
		b.Run(bc.name, func(b *testing.B) {
			start, cpu0 := k.Writes(), cpuTime()
			for i := 0; i < b.N; i++ {
				leases := bc.a
				if i%2 == 1 {
					leases = bc.b
				}
				if _, err := c.Converge(leases); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu0)
			b.ReportMetric(float64(k.Writes()-start)/float64(b.N), "writes/op")
			if _, err := c.Converge(all); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkIdlePoll is a steady-state poll with 2,000 other cells: "converge"
// is the kernel side alone (three dumps, plan, diff, no writes); "cycle" is
// the whole poll — renew and GET /leases over keep-alive mTLS to a stub
// controller serving a prepared body, then converge. The stub runs in this
// process, so its (small) serving cost is included.
func BenchmarkIdlePoll(b *testing.B) {
	cell := newTestCell(b)
	local, remotes, overlay := benchLeases(b)
	c, k := benchVTEP(b, cell, local, overlay)
	all := append([]lease.Lease{local}, remotes...)
	if _, err := c.Converge(all); err != nil {
		b.Fatal(err)
	}

	b.Run("converge", func(b *testing.B) {
		start, cpu0 := k.Writes(), cpuTime()
		for i := 0; i < b.N; i++ {
			if _, err := c.Converge(all); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
		b.ReportMetric(float64(k.Writes()-start)/float64(b.N), "writes/op")
	})

	// The baseline: upstream's converger rewrites every route, ARP and FDB
	// entry on every poll, then reads the tables to find stale ones.
	b.Run("upstream-style", func(b *testing.B) {
		start, cpu0 := k.Writes(), cpuTime()
		for i := 0; i < b.N; i++ {
			want, _ := c.Planner.Plan(all)
			if err := c.apply(Diff(Current{}, want)); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Current(); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
		b.ReportMetric(float64(k.Writes()-start)/float64(b.N), "writes/op")
	})

	b.Run("cycle", func(b *testing.B) {
		files := mtlstest.NewTestFiles(b)
		body, err := json.Marshal(map[string]any{"leases": all})
		if err != nil {
			b.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			if r.URL.Path == "/leases" {
				_, _ = w.Write(body)
				return
			}
			_, _ = w.Write([]byte("{}"))
		}))
		srv.TLS = files.ServerConfig(b)
		srv.StartTLS()
		defer srv.Close()
		client, err := NewControllerClient(Config{
			CACertFile: files.CAFile, ClientCertFile: files.ClientCert, ClientKeyFile: files.ClientKey, ConnectivityServerURL: srv.URL,
		}, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		cycle := NewCycle(logtest.New(b), client, c, local, newTestSender(b), time.Hour)
		if err := cycle.Run(context.Background()); err != nil { // handshake outside the loop
			b.Fatal(err)
		}
		b.ResetTimer()
		start, cpu0 := k.Writes(), cpuTime()
		for i := 0; i < b.N; i++ {
			if err := cycle.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu0)
		b.ReportMetric(float64(k.Writes()-start)/float64(b.N), "writes/op")
	})
}

func mustIndex(b *testing.B, cell *testCell) int {
	b.Helper()
	l, err := cell.nl.LinkByName("silk-vtep")
	if err != nil {
		b.Fatal(err)
	}
	return l.Attrs().Index
}

// logHostGCThresh notes the host's neighbour-table limit. It cannot be set
// inside a namespace (the table is shared by the host and only the initial
// namespace exposes gc_thresh*), and it need not be: permanent entries are
// exempt from it since Linux 5.0.
func logHostGCThresh(b *testing.B) {
	data, err := os.ReadFile(GCThresh3Path)
	if err != nil {
		return
	}
	if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n < benchRemotes {
		b.Logf("host gc_thresh3 is %d, below the %d permanent ARP entries this benchmark writes", n, benchRemotes)
	}
}
