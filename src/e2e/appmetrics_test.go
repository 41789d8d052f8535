package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

// appSeries reads one per-app series from a cell's agent /metrics: the
// sample of family whose labels hold every want.
func appSeries(c *celltest.Cell, family string, want ...string) (uint64, error) {
	code, body, err := c.Get("http://127.0.0.1:8721/metrics")
	if err != nil || code != 200 {
		return 0, fmt.Errorf("scrape: %d %v", code, err)
	}
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, family+"{") {
			continue
		}
		labels, value, _ := strings.Cut(line, "} ")
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(labels, w)
		}
		if ok {
			return strconv.ParseUint(value, 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s{%s} in:\n%s", family, strings.Join(want, ","), body)
}

// atLeast waits until the series is at least min.
func atLeast(t *testing.T, c *celltest.Cell, min uint64, family string, want ...string) {
	t.Helper()
	eventually(t, 10*time.Second, func() error {
		v, err := appSeries(c, family, want...)
		if err == nil && v < min {
			err = fmt.Errorf("%s{%s} = %d, want at least %d", family, strings.Join(want, ","), v, min)
		}
		return err
	})
}

// TestAppMetricsShowAllowedAndDenied: with enable_app_metrics on, an
// allowed and a denied c2c connection between two cells show up in each
// agent's per-app series with the apps' labels, on both backends.
func TestAppMetricsShowAllowedAndDenied(t *testing.T) {
	onEachBackend(t, true, func(t *testing.T, backend string) {
		lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true, Backend: backend})
		c1, c2 := lab.Cells[0], lab.Cells[1]
		for _, c := range []*celltest.Cell{c1, c2} {
			c.KillAgent()
			c.StartAgent(func(cfg *agent.Config) { cfg.EnableAppMetrics = true })
		}
		a := c1.AddContainer(t, app("app-a", "space-1"))
		b := c2.AddContainer(t, app("app-b", "space-2"))
		celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
		celltest.Listen(t, b.NS, "tcp", b.IP+":9003")
		// The agents count a container from the cycle after it starts:
		// wait for both series before any connection.
		atLeast(t, c1, 0, "netman_app_network_packets_total", `app_guid="app-a"`, `direction="out"`)
		atLeast(t, c2, 0, "netman_app_network_packets_total", `app_guid="app-b"`, `direction="in"`)
		lab.CreatePolicies(t, policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8080))
		eventually(t, 10*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "a to b") })
		denied(t, a, "tcp", b.IP+":9003")

		bLabels := []string{`app_guid="app-b"`, `space_guid="space-2"`, `org_guid="org-1"`}
		atLeast(t, c2, 1, "netman_app_network_connections_total", append(bLabels, `direction="in"`, `verdict="allowed"`)...)
		atLeast(t, c2, 1, "netman_app_network_connections_total", append(bLabels, `direction="in"`, `verdict="denied"`)...)
		atLeast(t, c2, 1, "netman_app_network_bytes_total", append(bLabels, `direction="in"`)...)
		atLeast(t, c2, 1, "netman_app_network_bytes_total", append(bLabels, `direction="out"`)...)
		// The source cell lets both through: the destination's policy
		// denies.
		aLabels := []string{`app_guid="app-a"`, `space_guid="space-1"`}
		atLeast(t, c1, 2, "netman_app_network_connections_total", append(aLabels, `direction="out"`, `verdict="allowed"`)...)
		atLeast(t, c1, 1, "netman_app_network_packets_total", append(aLabels, `direction="out"`)...)
		if v, err := appSeries(c1, "netman_app_network_connections_total", append(aLabels, `direction="out"`, `verdict="denied"`)...); err != nil || v != 0 {
			t.Errorf("app-a out denied on its own cell = %d, %v; want 0", v, err)
		}
	})
}
