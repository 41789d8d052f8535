package daemon

import (
	"os"
	"strconv"
	"strings"

	"code.cloudfoundry.org/lager/v3"
)

// GCThresh3Path is the kernel's hard limit on the neighbour table. It exists
// only in the initial network namespace: the IPv4 neighbour table is shared by
// every namespace on the host.
const GCThresh3Path = "/proc/sys/net/ipv4/neigh/default/gc_thresh3"

// gcThreshCheck warns when the ARP entries silk-daemon keeps reach the
// kernel's gc_thresh3. Upstream's large-deployment advice (an ~800-cell
// foundation needed 2048/4096/8192) comes from kernels that counted permanent
// entries against the limit and failed with "neighbor table overflow"; since
// Linux 5.0 permanent entries are exempt, so the warning matters only there,
// and for the dynamic entries the cell's containers create. The daemon never
// changes host sysctls.
type gcThreshCheck struct {
	logger lager.Logger
	path   string
	last   int // ARP count at the last check; -1 before the first
}

func newGCThreshCheck(logger lager.Logger, path string) *gcThreshCheck {
	return &gcThreshCheck{logger: logger, path: path, last: -1}
}

// check runs only when the count changed, so an idle poll costs nothing.
func (g *gcThreshCheck) check(arpEntries int) {
	if g == nil || g.path == "" || arpEntries == g.last {
		return
	}
	g.last = arpEntries
	data, err := os.ReadFile(g.path)
	if err != nil {
		g.logger.Debug("gc-thresh3-unreadable", lager.Data{"path": g.path, "error": err.Error()})
		return
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || arpEntries < limit {
		return
	}
	g.logger.Info("neighbor-table-near-gc-thresh3", lager.Data{
		"arp_entries": arpEntries,
		"gc_thresh3":  limit,
		"advice":      "on kernels before 5.0 raise net.ipv4.neigh.default.gc_thresh1/2/3 above the number of cells (e.g. 2048/4096/8192)",
	})
}
