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
// costs with the c2c rules of 65,535 source tags and 50,000 policies,
// against the same cell holding only the measured flow's policy, on
// nftables (c2c.PlanNFT in netman's table, behind the skeleton's forward
// chain and an overlay default deny) and on both iptables backends
// (c2c.Plan in the vpa-- chain at FORWARD position 1, then an
// established-accept and a reject for the server, as the wrapper's
// overlay-- chain does). The client connects and resets (SO_LINGER 0)
// sequentially, 5 runs of 1 s each after a warm-up. Reported: connections
// per second (median of the runs), connect latency p50/p99 (SYN to
// established: the SYN and SYN-ACK both cross the cell's rules) and the
// process's CPU time per connection (client, server and the kernel's
// forwarding, which runs in the sending thread's softirq on veth).
func BenchmarkNewConnections(b *testing.B) {
	netnstest.RequireRoot(b)
	ctx := context.Background()
	type backend struct {
		name string
		load func(b *testing.B, cell *nfttest.Cell, in Inputs)
	}
	planned := map[int][]iptables.Rule{} // Plan of each cell, by its container count
	backends := []backend{{"nftables", func(b *testing.B, cell *nfttest.Cell, in Inputs) {
		rs, err := PlanNFT(in, nil)
		if err != nil {
			b.Fatal(err)
		}
		var k *nft.Kernel
		cell.Do(b, func() (err error) { k, err = nft.New(); return err })
		overlayDeny(b, k, cell, &nfttest.Container{IP: netip.MustParseAddr(connServerIP)})
		cell.Do(b, func() error { _, err := NewNFTEnforcer(k).Enforce(ctx, rs, nil); return err })
	}}}
	for _, fl := range netnstest.IPTablesFlavors(b) {
		backends = append(backends, backend{"iptables-" + string(fl), func(b *testing.B, cell *nfttest.Cell, in Inputs) {
			rules := planned[len(in.Containers)]
			if rules == nil {
				var err error
				if rules, err = Plan(in, nil); err != nil {
					b.Fatal(err)
				}
				planned[len(in.Containers)] = rules
				// The worst case: the flow's MARK and ACCEPT are the last
				// of their kind (no ingress rules follow).
				lastMark := slices.IndexFunc(rules, func(r iptables.Rule) bool { return !strings.Contains(string(r), " -j MARK ") }) - 1
				if lastMark < 0 || !strings.HasPrefix(string(rules[lastMark]), "-s "+connClientIP+"/32 ") ||
					!strings.HasPrefix(string(rules[len(rules)-1]), "-d "+connServerIP+"/32 ") {
					b.Fatalf("the flow's rules are not last: %q … %q", rules[max(lastMark, 0)], rules[len(rules)-1])
				}
				b.Logf("iptables: %d rules, the flow's MARK at %d, its ACCEPT at %d", len(rules), lastMark+1, len(rules))
			}
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(b.TempDir(), "iptables.lock")})
			deny := iptables.NewTx(iptables.Filter).DeclareChain("overlay--server").
				Append("overlay--server", "-m state --state ESTABLISHED,RELATED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable").
				Append("FORWARD", iptables.Rule("-d "+connServerIP+"/32 -j overlay--server"))
			cell.Do(b, func() error { return d.Apply(ctx, deny) })
			cell.Do(b, func() error { _, err := NewEnforcer(d).Enforce(ctx, rules); return err })
		}})
	}
	cells := []struct {
		name string
		big  bool
	}{{"flow-policy-only", false}, {"tags=65535/policies=50000", true}}
	var inputs [2]Inputs
	for i, c := range cells {
		inputs[i] = connInputs(c.big)
	}
	for _, be := range backends {
		for i, c := range cells {
			b.Run(be.name+"/"+c.name, func(b *testing.B) {
				cell, client := connCell(b)
				be.load(b, cell, inputs[i])
				addr := net.JoinHostPort(connServerIP, strconv.Itoa(connPort))
				connect := func() time.Duration {
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
				for w := 0; w < 20; w++ {
					connect()
				}
				var lat []time.Duration
				var rates []float64
				var conns int
				cpu0 := selfCPU()
				b.ResetTimer()
				for run := 0; run < 5; run++ {
					n := 0
					t0 := time.Now()
					for time.Since(t0) < time.Second {
						lat = append(lat, connect())
						n++
					}
					rates = append(rates, float64(n)/time.Since(t0).Seconds())
					conns += n
				}
				b.StopTimer()
				cpu := selfCPU() - cpu0
				slices.Sort(rates)
				slices.Sort(lat)
				b.ReportMetric(rates[len(rates)/2], "conns/s")
				b.ReportMetric(float64(lat[len(lat)/2])/float64(time.Microsecond), "p50-us")
				b.ReportMetric(float64(lat[len(lat)*99/100])/float64(time.Microsecond), "p99-us")
				b.ReportMetric(float64(cpu)/float64(time.Microsecond)/float64(conns), "cpu-us/conn")
			})
		}
	}
}
