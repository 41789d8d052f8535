package e2e

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

// BenchmarkAgentIdle measures vxlan-policy-agent's CPU and memory on a cell
// holding many c2c policies while nothing changes: on iptables 10,000 (ten
// destination containers, each the destination of 1,000 policies), on
// nftables 50,000 (fifty destinations, issue 15's target: no kernel
// writes, under 1 % of a core). It reports CPU as a percentage of one core
// over a 30 s window, the resident set size, and the ruleset changes
// `nft monitor` saw in the cell over the window (iptables-nft's writes
// included), which must be none.
func BenchmarkAgentIdle(b *testing.B) {
	b.Run("iptables-10000", func(b *testing.B) { benchAgentIdle(b, celltest.IPTables, 10) })
	b.Run("nftables-50000", func(b *testing.B) { benchAgentIdle(b, celltest.NFTables, 50) })
}

// benchAgentIdle runs the idle measurement with dsts destinations of 1,000
// policies each.
func benchAgentIdle(b *testing.B, backend string, dsts int) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 1, Policy: true, Backend: backend})
	cell := lab.Cells[0]
	const perDst = 1000
	for d := 0; d < dsts; d++ {
		cell.AddContainer(b, app(fmt.Sprintf("idle-dst-%d", d), "space"))
		var batch []policy.Policy
		for s := 0; s < perDst; s++ {
			batch = append(batch, policy.NewPolicy(fmt.Sprintf("idle-src-%04d", s), fmt.Sprintf("idle-dst-%d", d), "tcp", 8080, 8080))
		}
		lab.CreatePolicies(b, batch...)
	}
	// Every policy enforced: an ACCEPT rule each in the vpa-- chain, an
	// element each in c2c-policies.
	enforced := func() int {
		if backend == celltest.NFTables {
			out, err := cell.NS.Command("nft", "list", "set", "inet", "netman", "c2c-policies").Output()
			if err != nil {
				return 0
			}
			return strings.Count(string(out), " . tcp . 8080")
		}
		return strings.Count(cell.IptablesSave(b, "filter"), "-j ACCEPT\n")
	}
	start := time.Now()
	for enforced() < dsts*perDst {
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("%d rules never enforced (%d are)", dsts*perDst, enforced())
		}
		time.Sleep(500 * time.Millisecond)
	}
	b.Logf("%d policies enforced %s after the last create", dsts*perDst, time.Since(start).Round(time.Millisecond))
	time.Sleep(2 * time.Second) // let the last cycle settle
	pid := cell.AgentPID()
	const window = 30 * time.Second
	var cpu, rss float64
	writes := 0
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		mon := watchRuleset(b, cell)
		t0 := cpuTicks(b, pid)
		time.Sleep(window)
		cpu += float64(cpuTicks(b, pid)-t0) / 100 / window.Seconds() * 100 // USER_HZ is 100
		rss = rssKiB(b, pid)
		if events := mon(); len(events) > 0 {
			writes += len(events)
			b.Errorf("the idle agent changed the ruleset %d times, e.g. %s", len(events), events[0])
		}
	}
	b.StopTimer()
	b.ReportMetric(cpu/float64(b.N), "cpu-%")
	b.ReportMetric(rss/1024, "rss-MiB")
	b.ReportMetric(float64(writes)/float64(b.N), "ruleset-changes")
}

// watchRuleset runs `nft monitor ruleset` in the cell until the returned
// function is called, which stops it (by its PID) and returns the events
// it printed.
func watchRuleset(b *testing.B, cell *celltest.Cell) func() []string {
	cmd := cell.NS.Command("nft", "monitor", "ruleset")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // subscribed before the window opens
	return func() []string {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		var events []string
		for _, l := range strings.Split(out.String(), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				events = append(events, l)
			}
		}
		return events
	}
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	// utime, stime, and cutime, cstime: the CPU of the children it waited
	// for (iptables-restore, nft) counts as the agent's.
	var ticks int64
	for _, v := range f[11:15] {
		n, _ := strconv.ParseInt(v, 10, 64)
		ticks += n
	}
	return ticks
}

func rssKiB(b *testing.B, pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			v, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return v
		}
	}
	return 0
}
