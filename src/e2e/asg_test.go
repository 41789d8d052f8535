package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

// egressGroup is a security group allowing tcp to dest:port, bound to the
// running spaces given.
func egressGroup(guid, dest string, port int, runningSpaces ...string) policy.SecurityGroup {
	return policy.SecurityGroup{
		GUID: guid, Name: guid,
		Rules:             fmt.Sprintf(`[{"protocol":"tcp","destination":"%s","ports":"%d"}]`, dest, port),
		StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: append([]string{}, runningSpaces...),
	}
}

// replaceGroups writes the security groups table as the ASG syncer does
// and returns when the write committed.
func replaceGroups(t testing.TB, st interface {
	ReplaceSecurityGroups(context.Context, []policy.SecurityGroup) error
}, groups ...policy.SecurityGroup) time.Time {
	t.Helper()
	if err := st.ReplaceSecurityGroups(context.Background(), groups); err != nil {
		t.Fatal(err)
	}
	return time.Now()
}

// waitConnects waits until from's connections to addr succeed (want) or
// fail (!want) and returns when that was first seen.
func waitConnects(t testing.TB, from *celltest.Container, addr string, want bool, within time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(within)
	for connects(from, addr) != want {
		if time.Now().After(deadline) {
			t.Fatalf("egress from %s to %s: connects=%v not reached within %s", from.IP, addr, want, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
	return time.Now()
}

// TestDynamicASGs is issue 13's scenario on real iptables: security groups
// written to the policy database, as policy-server-asg-syncer writes them,
// reach the asg- chains of running containers on every cell (through
// security_groups_last_updated, long-polled by the agents) and open and
// close their egress, without restarting anything.
// It runs on both enforcement backends at once.
func TestDynamicASGs(t *testing.T) {
	onEachBackend(t, true, testDynamicASGs)
}

func testDynamicASGs(t *testing.T, backend string) {
	lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true, Backend: backend})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	st := lab.PolicyStore(t)
	ext, extIP := lab.NewHost(200)
	celltest.Listen(t, ext, "tcp", extIP+":8443")
	target := extIP + ":8443"

	a := c1.AddContainer(t, app("app-a", "space-1"))
	b := c2.AddContainer(t, app("app-b", "space-2"))
	if connects(a, target) || connects(b, target) {
		t.Fatal("egress allowed with no security group")
	}

	t.Run("a group bound to space-1 opens egress for space-1's container only", func(t *testing.T) {
		written := replaceGroups(t, st, egressGroup("sg-web", extIP, 8443, "space-1"))
		seen := waitConnects(t, a, target, true, 10*time.Second)
		t.Logf("bind: enforced %s after the store write", seen.Sub(written))
		if connects(b, target) {
			t.Fatal("space-2's container got egress from a group bound to space-1")
		}
		if rules, want := asgRule(t, c1, extIP); !strings.Contains(rules, want) {
			t.Fatalf("cell 1 has no %q for the group:\n%s", want, rules)
		}
	})
	t.Run("binding space-2 too reaches the other cell", func(t *testing.T) {
		written := replaceGroups(t, st, egressGroup("sg-web", extIP, 8443, "space-1", "space-2"))
		seen := waitConnects(t, b, target, true, 10*time.Second)
		t.Logf("second bind: enforced %s after the store write", seen.Sub(written))
	})
	t.Run("a replace with the same content changes nothing", func(t *testing.T) {
		before, err := st.SecurityGroupsLastUpdated(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		replaceGroups(t, st, egressGroup("sg-web", extIP, 8443, "space-1", "space-2"))
		if after, _ := st.SecurityGroupsLastUpdated(context.Background()); after != before {
			t.Fatalf("security_groups_last_updated moved on an identical replace: %d → %d", before, after)
		}
	})
	t.Run("deleting the group closes egress on both cells", func(t *testing.T) {
		written := replaceGroups(t, st)
		seenA := waitConnects(t, a, target, false, 10*time.Second)
		seenB := waitConnects(t, b, target, false, 10*time.Second)
		t.Logf("delete: enforced %s (cell 1) and %s (cell 2) after the store write", seenA.Sub(written), seenB.Sub(written))
	})
	for _, c := range []*celltest.Cell{c1, c2} {
		if log := c.AgentLog(); !strings.Contains(log, "asg-chain-applied") {
			t.Errorf("cell %d's agent never applied an asg chain", c.Index)
		}
	}
}

// asgRule is what the cell's backend holds for a security group accepting
// tcp to ip:8443 (the cell's rules, and the line that says so): an asg-
// chain's rule in iptables, an element of an asg-- chain's ports set in
// nftables.
func asgRule(t *testing.T, c *celltest.Cell, ip string) (rules, want string) {
	if c.Backend() == celltest.NFTables {
		return c.NFTList(t), ip + " . tcp . 8443"
	}
	return c.IptablesSave(t, iptables.Filter), "--dst-range " + ip + "-" + ip + " -m tcp --dport 8443 -j ACCEPT"
}

// BenchmarkASGPropagation measures, per security group change, the time
// from the store write (ReplaceSecurityGroups committed, as the ASG syncer
// commits it) to the change being enforced on every container: two cells,
// containersPerCell containers each in one space, every container probing
// an outside host. Each change alternately binds and unbinds the group, so
// egress opens and closes; p50/p99 are over all changes.
func BenchmarkASGPropagation(b *testing.B) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 2, Policy: true})
	st := lab.PolicyStore(b)
	benchASGChanges(b, lab, func(bound bool, extIP string) time.Time {
		var groups []policy.SecurityGroup
		if bound {
			groups = append(groups, egressGroup("sg-bench", extIP, 8443, "space-1"))
		}
		return replaceGroups(b, st, groups...)
	}, nil)
}

// benchASGChanges runs b.N security group changes on lab, three containers
// per cell in space-1 probing an outside host's port 8443: change makes
// one (bound: egress opens, else it closes) and returns when it was made;
// the latency is from then until every container sees it. between, if set,
// runs after each change, untimed.
func benchASGChanges(b *testing.B, lab *celltest.Lab, change func(bound bool, extIP string) time.Time, between func()) {
	const containersPerCell = 3
	ext, extIP := lab.NewHost(200)
	celltest.Listen(b, ext, "tcp", extIP+":8443")
	target := extIP + ":8443"
	var ctrs []*celltest.Container
	for _, c := range lab.Cells {
		for i := range containersPerCell {
			ctrs = append(ctrs, c.AddContainer(b, app(fmt.Sprintf("bench-%d-%d", c.Index, i), "space-1")))
		}
	}
	var lat benchlat.Latencies
	bound := false
	for i := 0; i < b.N; i++ {
		bound = !bound
		b.StartTimer()
		changed := change(bound, extIP)
		last := changed
		for _, c := range ctrs {
			if seen := waitConnects(b, c, target, bound, 30*time.Second); seen.After(last) {
				last = seen
			}
		}
		lat.Add(last.Sub(changed))
		b.StopTimer()
		if between != nil {
			between()
		}
	}
	lat.Report(b)
}

// ccGroup is egressGroup as Cloud Controller holds it.
func ccGroup(guid, dest string, port int, runningSpaces ...string) cc.SecurityGroup {
	return cc.SecurityGroup{GUID: guid, Name: guid, RunningSpaces: runningSpaces,
		Rules: []cc.Rule{{Protocol: "tcp", Destination: dest, Ports: strconv.Itoa(port)}}}
}

// TestDynamicASGsThroughCloudController is the whole path: a security
// group created, bound and deleted in (a fake) Cloud Controller, the real
// policy-server-asg-syncer polling it every second, policy-server-internal
// and the agents on two cells.
func TestDynamicASGsThroughCloudController(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	cloud := lab.StartCC(t, 1)
	ext, extIP := lab.NewHost(200)
	celltest.Listen(t, ext, "tcp", extIP+":8443")
	target := extIP + ":8443"
	a := c1.AddContainer(t, app("app-a", "space-1"))
	b := c2.AddContainer(t, app("app-b", "space-2"))
	if connects(a, target) || connects(b, target) {
		t.Fatal("egress allowed with no security group")
	}

	changed := time.Now()
	cloud.Put(ccGroup("sg-web", extIP, 8443, "space-1"))
	seen := waitConnects(t, a, target, true, 10*time.Second)
	t.Logf("created in CC: enforced %s later", seen.Sub(changed))
	if connects(b, target) {
		t.Fatal("space-2's container got egress from a group bound to space-1")
	}

	changed = time.Now()
	if err := cloud.BindRunning("sg-web", "space-2"); err != nil {
		t.Fatal(err)
	}
	seen = waitConnects(t, b, target, true, 10*time.Second)
	t.Logf("bound in CC: enforced %s later", seen.Sub(changed))

	changed = time.Now()
	if !cloud.Delete("sg-web") {
		t.Fatal("delete: no such group")
	}
	seenA := waitConnects(t, a, target, false, 10*time.Second)
	seenB := waitConnects(t, b, target, false, 10*time.Second)
	t.Logf("deleted in CC: enforced %s (cell 1) and %s (cell 2) later", seenA.Sub(changed), seenB.Sub(changed))
	if log := cloud.SyncerLog(); strings.Contains(log, `"level":"error"`) {
		t.Errorf("the syncer logged errors:\n%s", log)
	}
}

// BenchmarkCCASGPropagation measures, per change in Cloud Controller, the
// time from the change to its enforcement on every container: the fake
// Cloud Controller, policy-server-asg-syncer at asg_poll_interval_seconds
// 1 (upstream's minimum), policy-server-internal, two cells with three
// containers each. Each change alternately creates a group bound to the
// containers' space and deletes it.
func BenchmarkCCASGPropagation(b *testing.B) {
	b.StopTimer()
	lab := celltest.New(b, celltest.Options{Cells: 2, Policy: true})
	cloud := lab.StartCC(b, 1)
	benchASGChanges(b, lab, func(bound bool, extIP string) time.Time {
		changed := time.Now()
		if bound {
			cloud.Put(ccGroup("sg-bench", extIP, 8443, "space-1"))
		} else {
			cloud.Delete("sg-bench")
		}
		return changed
	}, func() {
		// Changes land at random points of the syncer's second.
		time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond)
	})
}
