package e2e

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

// connects tries one TCP connection from c to addr with a short timeout.
// The cell answers a denied SYN with an ICMP reject, but the kernel rate
// limits those (a burst of about six, then one a second per peer), so a
// probe that waited for the reject would often sit out a 1 s SYN
// retransmission and measure the limiter, not the policy.
func connects(c *celltest.Container, addr string) bool {
	var ok bool
	_ = c.NS.Do(func() error {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Millisecond)
		if err == nil {
			ok = true
			conn.Close()
		}
		return nil
	})
	return ok
}

// BenchmarkPolicyPropagation measures, per policy, the time from the
// external API's answer to a create to the first TCP connection the new
// policy allows, source on cell 1 and destination on cell 2: long-poll on
// policy-server-internal, the agents' cycles, and iptables on both cells.
// Each iteration creates policiesPerRun policies one after another, each
// for a new port, and reports p50/p99 over all of them. With -agent-plain
// the agents poll upstream's way (long-poll off, poll_interval 5 s).
func BenchmarkPolicyPropagation(b *testing.B) {
	for _, mode := range []struct {
		name  string
		agent func(*agent.Config)
	}{
		{"long-poll", nil},
		{"plain-5s", func(c *agent.Config) { c.LongPollWaitSeconds = new(int) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			b.StopTimer()
			lab := celltest.New(b, celltest.Options{Cells: 2, Policy: true})
			c1, c2 := lab.Cells[0], lab.Cells[1]
			if mode.agent != nil {
				c1.KillAgent()
				c2.KillAgent()
				c1.StartAgent(mode.agent)
				c2.StartAgent(mode.agent)
			}
			src := c1.AddContainer(b, app("bench-src", "space"))
			dst := c2.AddContainer(b, app("bench-dst", "space"))
			const policiesPerRun = 50
			for p := 0; p < policiesPerRun; p++ {
				celltest.Listen(b, dst.NS, "tcp", dst.IP+":"+strconv.Itoa(20000+p))
			}
			var lat benchlat.Latencies
			port := 20000
			for i := 0; i < b.N; i++ {
				for p := 0; p < policiesPerRun; p++ {
					addr := fmt.Sprintf("%s:%d", dst.IP, port)
					b.StartTimer()
					created := lab.CreatePolicies(b, policy.NewPolicy("bench-src", "bench-dst", "tcp", port, port))
					for {
						if connects(src, addr) {
							break
						}
						if time.Since(created) > 30*time.Second {
							b.Fatalf("policy for port %d not enforced after 30 s", port)
						}
						time.Sleep(2 * time.Millisecond)
					}
					lat.Add(time.Since(created))
					b.StopTimer()
					// Next iteration reuses the ports: delete and wait for the deny.
					lab.DeletePolicies(b, policy.NewPolicy("bench-src", "bench-dst", "tcp", port, port))
					port++
					if port == 20000+policiesPerRun {
						port = 20000
					}
				}
				for p := 20000; p < 20000+policiesPerRun; p++ {
					for connects(src, fmt.Sprintf("%s:%d", dst.IP, p)) {
						time.Sleep(20 * time.Millisecond)
					}
				}
			}
			lat.Report(b)
		})
	}
}
