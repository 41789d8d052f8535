package netmon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/netlinkx"
)

// RuleCounter counts the cell's iptables rules.
type RuleCounter interface {
	CountRules(ctx context.Context) (int, error)
}

// Saver reads one iptables table: *iptables.Driver (under the lock file)
// or the in-memory iptablestest.Tables.
type Saver interface {
	Save(ctx context.Context, table string) (*iptables.State, error)
}

// countedTables are the tables upstream counts, in its order.
var countedTables = []string{iptables.Filter, iptables.NAT}

// IPTablesRules counts the filter and nat tables the way upstream does:
// the number of lines `iptables -S -t filter` plus `iptables -S -t nat`
// print. Each table is read on its own under the lock, as upstream.
type IPTablesRules struct {
	Tables Saver
}

// CountRules implements RuleCounter.
func (r IPTablesRules) CountRules(ctx context.Context) (int, error) {
	total := 0
	for _, t := range countedTables {
		s, err := r.Tables.Save(ctx, t)
		if err != nil {
			return 0, fmt.Errorf("reading %s table: %w", t, err)
		}
		total += CountState(s)
	}
	return total, nil
}

// CountState is the number of lines `iptables -S -t <table>` prints for s:
// one per chain (-P for a built-in chain, -N for a user chain) plus one per
// rule (-A). iptables-save prints the same objects, a chain as
// ":NAME POLICY [pkts:bytes]" and a rule as "-A …", so the two counts agree.
func CountState(s *iptables.State) int {
	n := 0
	for _, c := range s.Chains() {
		n += 1 + len(c.Rules)
	}
	return n
}

// CountInterfaces is the number of network interfaces in the calling
// thread's network namespace: the links upstream counts with net.Interfaces,
// read with one link dump that is repeated when the kernel interrupts it
// (net.Interfaces takes an interrupted dump as complete).
func CountInterfaces() (int, error) {
	links, err := netlinkx.LinkList(netlinkx.Host)
	if err != nil {
		return 0, err
	}
	return len(links), nil
}

// DefaultSysClassNet is where the kernel publishes interface counters.
const DefaultSysClassNet = "/sys/class/net"

// Stats reads one interface's counters from <Dir>/<Interface>/statistics/.
// Note that sysfs shows the network namespace it was mounted in, not the
// calling thread's.
type Stats struct {
	Dir       string // "" means DefaultSysClassNet
	Interface string
}

// Read returns the counter stat (e.g. "tx_bytes").
func (s Stats) Read(stat string) (uint64, error) {
	dir := s.Dir
	if dir == "" {
		dir = DefaultSysClassNet
	}
	path := filepath.Join(dir, s.Interface, "statistics", stat)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", stat, err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parsing %s: %w", path, err)
	}
	return v, nil
}

// Aggregator keeps the maximum, minimum and average of the rule counts
// measured since the last Flush. Safe for concurrent use: the metric poller
// adds while the telemetry poller flushes.
type Aggregator struct {
	mu         sync.Mutex
	n          int
	total      int
	maxV, minV int
}

// Summary is what an Aggregator saw between two flushes. Average is the
// integer (truncated) mean, as upstream. All zero when nothing was added.
type Summary struct {
	Count, Maximum, Minimum, Average int
}

// Add records one measurement.
func (a *Aggregator) Add(v int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n == 0 || v > a.maxV {
		a.maxV = v
	}
	if a.n == 0 || v < a.minV {
		a.minV = v
	}
	a.n++
	a.total += v
}

// Flush returns the summary and starts over, in one step so no measurement
// falls between reading and resetting.
func (a *Aggregator) Flush() Summary {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Summary{Count: a.n, Maximum: a.maxV, Minimum: a.minV}
	if a.n > 0 {
		s.Average = a.total / a.n
	}
	a.n, a.total, a.maxV, a.minV = 0, 0, 0, 0
	return s
}
