package c2c

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// The measured flow of BenchmarkNewConnections: a client container
// connecting to a server container's port through the cell.
const (
	connClientIP = "10.255.255.2"
	connServerIP = "10.255.255.3"
	connPort     = 8080
)

// connInputs is the cell of BenchmarkNewConnections. Big: 65,535 source
// tags (65,534 local source containers with one app and tag each, plus the
// client's app, tag FFFF) and 50,000 policies (49,999 to 1,220 of those
// containers, plus the client's app to the server's port), the measured
// flow's MARK and ACCEPT rules last in upstream's order (their IPs sort
// after all others), the worst case for iptables. Small: only the client,
// the server and the flow's policy.
func connInputs(big bool) Inputs {
	in := Inputs{
		Containers: []Container{
			{Handle: "client", IP: connClientIP, AppID: "app-client"},
			{Handle: "server", IP: connServerIP, AppID: "app-server"},
		},
	}
	flow := pol("app-client", "FFFF", "app-server", "0000", "tcp", connPort, connPort)
	if !big {
		in.Policies = []Policy{flow}
		return in
	}
	const fillers, dsts = 65534, 1220
	base := netip.MustParseAddr("10.200.0.0").As4()
	for i := 0; i < fillers; i++ {
		ip := base
		n := i + 1
		ip[2], ip[3] = byte(n>>8), byte(n)
		in.Containers = append(in.Containers, Container{
			Handle: fmt.Sprintf("h-%05d", i), IP: netip.AddrFrom4(ip).String(), AppID: fmt.Sprintf("app-%05d", i),
		})
	}
	for j := 0; j < 49999; j++ {
		src := (j*7919 + 1) % fillers
		dst := j % dsts
		in.Policies = append(in.Policies, pol(fmt.Sprintf("app-%05d", src), fmt.Sprintf("%04X", src+1),
			fmt.Sprintf("app-%05d", dst), fmt.Sprintf("%04X", dst+1), "tcp", 8000+j/dsts, 8000+j/dsts))
	}
	// Every filler app a source of some policy: 65,534 tags.
	for i := 0; i < fillers; i++ {
		in.Policies = append(in.Policies, pol(fmt.Sprintf("app-%05d", i), fmt.Sprintf("%04X", i+1), "app-elsewhere", "0000", "tcp", 1, 1))
	}
	in.Policies = append(in.Policies, flow)
	return in
}

// connCell is a cell with the client and server containers and a server
// accepting connections on the flow's port (it reads until the client's
// reset, then closes, so no TIME_WAIT piles up).
func connCell(b *testing.B) (cell *nfttest.Cell, client *nfttest.Container) {
	cell = nfttest.NewCell(b)
	client = cell.AddContainer(b, connClientIP)
	server := cell.AddContainer(b, connServerIP)
	var l net.Listener
	if err := server.NS.Do(func() (err error) {
		l, err = net.Listen("tcp", net.JoinHostPort(connServerIP, strconv.Itoa(connPort)))
		return err
	}); err != nil {
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
				buf := make([]byte, 64)
				for {
					if _, err := c.Read(buf); err != nil {
						break
					}
				}
				c.Close()
			}()
		}
	}()
	return cell, client
}

// BenchmarkNewConnections measures what a new connection through a cell
// costs with the c2c rules of 65,535 source tags and 50,000 policies
// ("big") against the same cell holding only the measured flow's policy
// ("small"), on nftables (c2c.PlanNFT in netman's table, behind the
// skeleton's forward chain and an overlay default deny) and on both
// iptables backends (c2c.Plan in the vpa-- chain at FORWARD position 1,
// then an established-accept and a reject for the server, as the wrapper's
// overlay-- chain does). The client connects and resets (SO_LINGER 0)
// sequentially. On iptables a third cell ("big-dst") holds the big rules
// with iptables_per_destination_chains. The cells exist at once and are
// measured in turns, 10 rounds of 0.5 s each, so the machine's load falls
// on each alike.
// Reported per cell (medians over the rounds): connections per second,
// connect latency p50 (SYN to established: the SYN and the SYN-ACK both
// cross the cell's rules) and the process's CPU time per connection
// (client, server and the kernel's forwarding, which on veth runs in the
// sending thread's softirq); and the medians of the per-round ratios to
// the small cell of CPU per connection and of latency.
func BenchmarkNewConnections(b *testing.B) {
	netnstest.RequireRoot(b)
	ctx := context.Background()
	type variant struct {
		name   string
		in     Inputs
		perDst bool // iptables_per_destination_chains
	}
	small := variant{name: "small", in: connInputs(false)}
	big := variant{name: "big", in: connInputs(true)}
	bigDst := variant{name: "big-dst", in: big.in, perDst: true}
	type backend struct {
		name     string
		variants []variant
		load     func(b *testing.B, cell *nfttest.Cell, v variant)
	}
	type planKey struct {
		containers int
		perDst     bool
	}
	planned := map[planKey]Chains{} // PlanChains of each variant
	backends := []backend{{"nftables", []variant{small, big}, func(b *testing.B, cell *nfttest.Cell, v variant) {
		rs, err := PlanNFT(v.in, nil)
		if err != nil {
			b.Fatal(err)
		}
		var k *nft.Kernel
		cell.Do(b, func() (err error) { k, err = nft.New(); return err })
		overlayDeny(b, k, cell, &nfttest.Container{IP: netip.MustParseAddr(connServerIP)})
		cell.Do(b, func() error { _, err := NewNFTEnforcer(k).Enforce(ctx, rs, nil); return err })
	}}}
	for _, fl := range netnstest.IPTablesFlavors(b) {
		backends = append(backends, backend{"iptables-" + string(fl), []variant{small, big, bigDst}, func(b *testing.B, cell *nfttest.Cell, v variant) {
			key := planKey{len(v.in.Containers), v.perDst}
			want, ok := planned[key]
			if !ok {
				var err error
				if want, err = PlanChains(v.in, nil, v.perDst); err != nil {
					b.Fatal(err)
				}
				planned[key] = want
				// The worst case: the flow's MARK and ACCEPT are the last
				// of their kind (no ingress rules follow).
				rules := want.Main
				if v.perDst {
					rules = want.Dst[DstChainPrefix+connServerIP]
				}
				lastMark := slices.IndexFunc(want.Main, func(r iptables.Rule) bool { return !strings.Contains(string(r), " -j MARK ") }) - 1
				if lastMark < 0 || !strings.HasPrefix(string(want.Main[lastMark]), "-s "+connClientIP+"/32 ") ||
					len(rules) == 0 || !strings.HasPrefix(string(rules[len(rules)-1]), "-d "+connServerIP+"/32 -p tcp") {
					b.Fatalf("the flow's rules are not last: %q … %q", want.Main[max(lastMark, 0)], rules)
				}
				b.Logf("iptables %s: %d rules in the vpa-- chain, the flow's MARK at %d, its ACCEPT at %d of its chain (%d rules in all)",
					v.name, len(want.Main), lastMark+1, len(rules), want.Size())
			}
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(b.TempDir(), "iptables.lock")})
			deny := iptables.NewTx(iptables.Filter).DeclareChain("overlay--server").
				Append("overlay--server", "-m state --state ESTABLISHED,RELATED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable").
				Append("FORWARD", iptables.Rule("-d "+connServerIP+"/32 -j overlay--server"))
			cell.Do(b, func() error { return d.Apply(ctx, deny) })
			cell.Do(b, func() error { _, err := NewEnforcer(d).EnforceChains(ctx, want); return err })
		}})
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			// All cells at once, measured in turns (the order rotated
			// every round), so the machine's load falls on each alike.
			n := len(be.variants)
			connect := make([]func() time.Duration, n)
			for k, v := range be.variants {
				cell, client := connCell(b)
				be.load(b, cell, v)
				connect[k] = dialer(b, client)
			}
			type run struct {
				rate, cpuPerConn float64
				p50              time.Duration
			}
			runs := make([][]run, n)
			cpuRatio, p50Ratio := make([][]float64, n), make([][]float64, n)
			measure := func(k int) run {
				var lat []time.Duration
				cpu0 := selfCPU()
				t0 := time.Now()
				for time.Since(t0) < 500*time.Millisecond {
					lat = append(lat, connect[k]())
				}
				el, cpu := time.Since(t0), selfCPU()-cpu0
				slices.Sort(lat)
				return run{float64(len(lat)) / el.Seconds(), float64(cpu) / float64(time.Microsecond) / float64(len(lat)), lat[len(lat)/2]}
			}
			for k := range connect {
				for w := 0; w < 20; w++ {
					connect[k]()
				}
			}
			b.ResetTimer()
			for round := 0; round < 10; round++ {
				r := make([]run, n)
				for j := 0; j < n; j++ {
					k := (round + j) % n
					r[k] = measure(k)
					runs[k] = append(runs[k], r[k])
				}
				for k := 1; k < n; k++ {
					cpuRatio[k] = append(cpuRatio[k], r[k].cpuPerConn/r[0].cpuPerConn)
					p50Ratio[k] = append(p50Ratio[k], float64(r[k].p50)/float64(r[0].p50))
				}
			}
			b.StopTimer()
			median := func(v []float64) float64 { v = slices.Clone(v); slices.Sort(v); return v[len(v)/2] }
			for k, v := range be.variants {
				var rate, cpu, p50 []float64
				for _, r := range runs[k] {
					rate = append(rate, r.rate)
					cpu = append(cpu, r.cpuPerConn)
					p50 = append(p50, float64(r.p50)/float64(time.Microsecond))
				}
				b.ReportMetric(median(rate), v.name+"-conns/s")
				b.ReportMetric(median(cpu), v.name+"-cpu-us/conn")
				b.ReportMetric(median(p50), v.name+"-p50-us")
				if k > 0 {
					b.ReportMetric(median(cpuRatio[k]), v.name+"/small-cpu")
					b.ReportMetric(median(p50Ratio[k]), v.name+"/small-p50")
				}
			}
		})
	}
}

// dialer returns a connect from client to the server: it times the dial
// (SYN to established) and then resets the connection.
func dialer(b *testing.B, client *nfttest.Container) func() time.Duration {
	addr := net.JoinHostPort(connServerIP, strconv.Itoa(connPort))
	return func() time.Duration {
		var d time.Duration
		if err := client.NS.Do(func() error {
			t0 := time.Now()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			d = time.Since(t0)
			if err != nil {
				return err
			}
			conn.(*net.TCPConn).SetLinger(0)
			return conn.Close()
		}); err != nil {
			b.Fatal(err)
		}
		return d
	}
}
