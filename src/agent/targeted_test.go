package agent

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// countingSource counts a cell's policy fetches and the long-polls that
// came back with a change.
type countingSource struct {
	*Client
	mu              sync.Mutex
	fetches, wakeUp int
}

func (c *countingSource) Policies(ctx context.Context, ids ...string) ([]c2c.Policy, error) {
	c.mu.Lock()
	c.fetches++
	c.mu.Unlock()
	return c.Client.Policies(ctx, ids...)
}

func (c *countingSource) WaitPolicies(ctx context.Context, since int64, ids []string, wait, grace time.Duration) (Stamp, error) {
	s, err := c.Client.WaitPolicies(ctx, since, ids, wait, grace)
	if err == nil && s.Value != since && !s.Unchanged {
		c.mu.Lock()
		c.wakeUp++
		c.mu.Unlock()
	}
	return s, err
}

func (c *countingSource) counts() (fetches, wakeUps int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches, c.wakeUp
}

// TestLongPollWakesOnlyTheCellsOfTheChangedApps runs three agents' policy
// cycles against policy-server-internal: a policy from a new app on cell 1
// to an app on cell 2 wakes those two cells (the source cell marks with
// the new source tag, the destination accepts it) and not cell 3, whose
// apps it does not concern; cell 3 takes the new stamp as its own at the
// end of its long-poll without fetching.
func TestLongPollWakesOnlyTheCellsOfTheChangedApps(t *testing.T) {
	ctx := context.Background()
	st, url := realServerURL(t)
	if err := st.Create(ctx, []policy.Policy{policy.NewPolicy("app-e", "app-f", "tcp", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	wait := 2
	cfg := Config{PollInterval: 3600, LongPollWaitSeconds: &wait, IPTablesAcceptedUDPLogsPerSec: 100, ClientTimeoutSeconds: 5}
	type cell struct {
		cycle  *policyCycle
		source *countingSource
	}
	var cells []cell
	for _, app := range []string{"app-src", "app-dst", "app-other"} {
		store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
		if err := store.Add(ctx, "h", "10.255.1.2", map[string]any{"policy_group_id": app, "space_id": "space-1", "container_workload": "app"}); err != nil {
			t.Fatal(err)
		}
		sender, err := metrics.NewSender(nil, "vxlan-policy-agent", 0)
		if err != nil {
			t.Fatal(err)
		}
		src := &countingSource{Client: NewClient(url, nil, 5*time.Second)}
		logger := logtest.New(t).Session(app)
		c := newPolicyCycle(logger, sender, store, src, iptablesC2C{enforcer: c2c.NewEnforcer(iptablestest.New())}, cfg.c2cRules(), cfg.longPoll())
		runMembers(t, logger, c.members(cfg.pollInterval(), 0)...)
		cells = append(cells, cell{c, src})
	}
	// Every cell has enforced and parked a long-poll for its own apps.
	waitFor(t, 5*time.Second, "cells settled", func() bool {
		for _, c := range cells {
			if f, _ := c.source.counts(); f == 0 || !c.cycle.stamp.healthy.Load() || c.cycle.stamp.targetsSet() == nil {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // the targeted long-polls are parked
	before, woken := make([]int, len(cells)), make([]int, len(cells))
	for i, c := range cells {
		before[i], woken[i] = c.source.counts()
	}

	if err := st.Create(ctx, []policy.Policy{policy.NewPolicy("app-src", "app-dst", "tcp", 9090, 9090)}); err != nil {
		t.Fatal(err)
	}
	now, err := st.LastUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cells[:2] {
		waitFor(t, time.Second, cellName(i)+" fetched the change", func() bool {
			f, _ := c.source.counts()
			return f > before[i] && c.cycle.enforcedStamp() == now
		})
	}
	// The other cell learns the stamp at the end of its long-poll.
	other := cells[2]
	waitFor(t, time.Duration(wait+2)*time.Second, "other cell took the new stamp", func() bool {
		return other.cycle.enforcedStamp() == now
	})
	if f, w := other.source.counts(); f != before[2] || w != woken[2] {
		t.Fatalf("the cell of unrelated apps fetched %d times and was woken %d times", f-before[2], w-woken[2])
	}
	for i, c := range cells[:2] {
		if _, w := c.source.counts(); w == woken[i] {
			t.Errorf("%s was not woken", cellName(i))
		}
	}
}

func cellName(i int) string { return []string{"source cell", "destination cell", "other cell"}[i] }

// enforcedStamp is the policies stamp the last good cycle enforced.
func (c *policyCycle) enforcedStamp() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enforced.policies
}

func (w *watcher) targetsSet() *[]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.targets
}
