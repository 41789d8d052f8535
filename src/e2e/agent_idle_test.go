package e2e

import (
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
// holding 10,000 c2c rules while nothing changes: ten destination
// containers, each the destination of 1,000 policies. It reports CPU as a
// percentage of one core over a 30 s window and the resident set size.
func BenchmarkAgentIdle(b *testing.B) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 1, Policy: true})
	cell := lab.Cells[0]
	const dsts, perDst = 10, 1000
	for d := 0; d < dsts; d++ {
		cell.AddContainer(b, app(fmt.Sprintf("idle-dst-%d", d), "space"))
		var batch []policy.Policy
		for s := 0; s < perDst; s++ {
			batch = append(batch, policy.NewPolicy(fmt.Sprintf("idle-src-%04d", s), fmt.Sprintf("idle-dst-%d", d), "tcp", 8080, 8080))
		}
		lab.CreatePolicies(b, batch...)
	}
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(cell.IptablesSave(b, "filter"), "-j ACCEPT\n") < dsts*perDst {
		if time.Now().After(deadline) {
			b.Fatal("10,000 rules never enforced")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // let the last cycle settle
	pid := cell.AgentPID()
	const window = 30 * time.Second
	var cpu, rss float64
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		t0 := cpuTicks(b, pid)
		time.Sleep(window)
		cpu += float64(cpuTicks(b, pid)-t0) / 100 / window.Seconds() * 100 // USER_HZ is 100
		rss = rssKiB(b, pid)
	}
	b.StopTimer()
	b.ReportMetric(cpu/float64(b.N), "cpu-%")
	b.ReportMetric(rss/1024, "rss-MiB")
}

func cpuTicks(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(data)[strings.LastIndexByte(string(data), ')')+2:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return utime + stime
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
