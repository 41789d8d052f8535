package addresstable_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newTable(t *testing.T, c *clock) *addresstable.Table {
	return addresstable.New(logtest.New(t), 10*time.Second, 5*time.Second, addresstable.WithClock(c.Now))
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"app.apps.internal":     "app.apps.internal.",
		"APP.Apps.Internal.":    "app.apps.internal.",
		"0.app.apps.internal":   "0.app.apps.internal.",
		"already.lower.dotted.": "already.lower.dotted.",
	} {
		if got := addresstable.Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAddLookupRemove(t *testing.T) {
	tests := []struct {
		name   string
		apply  func(*addresstable.Table)
		lookup string
		want   []string
	}{
		{"unknown name", func(*addresstable.Table) {}, "nope.apps.internal", nil},
		{"one ip", func(tb *addresstable.Table) { tb.Add([]string{"app.apps.internal"}, "10.0.0.1") }, "app.apps.internal", []string{"10.0.0.1"}},
		{"insertion order", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal"}, "10.0.0.2")
			tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
		}, "app.apps.internal.", []string{"10.0.0.2", "10.0.0.1"}},
		{"no duplicates", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
			tb.Add([]string{"app.apps.internal."}, "10.0.0.1")
			tb.Add([]string{"APP.apps.internal"}, "10.0.0.1")
		}, "app.apps.internal", []string{"10.0.0.1"}},
		{"case-insensitive insert and lookup", func(tb *addresstable.Table) { tb.Add([]string{"MyApp.Apps.Internal"}, "10.0.0.1") }, "myapp.APPS.internal.", []string{"10.0.0.1"}},
		{"instance names as route_emitter registers them", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal", "0.app.apps.internal"}, "10.0.0.1")
			tb.Add([]string{"app.apps.internal", "1.app.apps.internal"}, "10.0.0.2")
		}, "1.app.apps.internal", []string{"10.0.0.2"}},
		{"all instances", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal", "0.app.apps.internal"}, "10.0.0.1")
			tb.Add([]string{"app.apps.internal", "1.app.apps.internal"}, "10.0.0.2")
		}, "app.apps.internal", []string{"10.0.0.1", "10.0.0.2"}},
		{"remove one of two keeps order", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
			tb.Add([]string{"app.apps.internal"}, "10.0.0.2")
			tb.Add([]string{"app.apps.internal"}, "10.0.0.3")
			tb.Remove([]string{"APP.apps.internal"}, "10.0.0.2")
		}, "app.apps.internal", []string{"10.0.0.1", "10.0.0.3"}},
		{"remove last forgets the name", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
			tb.Remove([]string{"app.apps.internal."}, "10.0.0.1")
		}, "app.apps.internal", nil},
		{"remove unknown ip or name is a no-op", func(tb *addresstable.Table) {
			tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
			tb.Remove([]string{"app.apps.internal"}, "10.9.9.9")
			tb.Remove([]string{"other.apps.internal"}, "10.0.0.1")
		}, "app.apps.internal", []string{"10.0.0.1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTable(t, newClock())
			tt.apply(tb)
			if diff := cmp.Diff(tt.want, tb.Lookup(tt.lookup)); diff != "" {
				t.Errorf("Lookup(%q) (-want +got):\n%s", tt.lookup, diff)
			}
		})
	}
}

func TestLookupResultIsNotChangedByLaterWrites(t *testing.T) {
	tb := newTable(t, newClock())
	tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
	tb.Add([]string{"app.apps.internal"}, "10.0.0.2")
	got := tb.Lookup("app.apps.internal")
	tb.Remove([]string{"app.apps.internal"}, "10.0.0.1")
	tb.Add([]string{"app.apps.internal"}, "10.0.0.3")
	if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.2"}, got); diff != "" {
		t.Errorf("earlier lookup changed (-want +got):\n%s", diff)
	}
}

func TestAll(t *testing.T) {
	c := newClock()
	tb := newTable(t, c)
	tb.Add([]string{"b.apps.internal"}, "10.0.0.2")
	tb.Add([]string{"a.apps.internal"}, "10.0.0.1")
	c.Advance(11 * time.Second)
	tb.Add([]string{"b.apps.internal"}, "10.0.0.3")
	tb.Prune()
	want := []addresstable.Address{
		{Hostname: "a.apps.internal.", IPs: []string{}},
		{Hostname: "b.apps.internal.", IPs: []string{"10.0.0.3"}},
	}
	if diff := cmp.Diff(want, tb.All()); diff != "" {
		t.Errorf("All (-want +got):\n%s", diff)
	}
	if got := tb.Len(); got != 1 {
		t.Errorf("Len = %d, want 1", got)
	}
}

func TestPruneDropsOnlyStaleEntries(t *testing.T) {
	c := newClock()
	tb := newTable(t, c)
	tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
	tb.Add([]string{"app.apps.internal"}, "10.0.0.2")
	c.Advance(6 * time.Second)
	tb.Add([]string{"app.apps.internal"}, "10.0.0.1") // refreshed
	c.Advance(5 * time.Second)                        // .2 is 11 s old, .1 is 5 s old
	tb.Prune()
	if diff := cmp.Diff([]string{"10.0.0.1"}, tb.Lookup("app.apps.internal")); diff != "" {
		t.Errorf("after prune (-want +got):\n%s", diff)
	}
	c.Advance(5 * time.Second) // exactly at the threshold: still fresh
	tb.Prune()
	if got := tb.Lookup("app.apps.internal"); len(got) != 1 {
		t.Errorf("entry at the threshold pruned: %v", got)
	}
	c.Advance(time.Nanosecond)
	tb.Prune()
	if got := tb.Lookup("app.apps.internal"); len(got) != 0 {
		t.Errorf("stale entry kept: %v", got)
	}
}

func TestPruneIfDueHonoursPauseAndResumeDelay(t *testing.T) {
	c := newClock()
	tb := newTable(t, c)
	tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
	c.Advance(11 * time.Second)

	tb.PausePruning()
	if tb.PruneIfDue() {
		t.Fatal("pruned while paused")
	}
	if got := tb.Lookup("app.apps.internal"); len(got) != 1 {
		t.Fatalf("paused table lost entries: %v", got)
	}

	tb.ResumePruning()
	c.Advance(4 * time.Second)
	if tb.PruneIfDue() {
		t.Fatal("pruned within the resume delay")
	}
	c.Advance(time.Second)
	if !tb.PruneIfDue() {
		t.Fatal("did not prune after the resume delay")
	}
	if got := tb.Lookup("app.apps.internal"); len(got) != 0 {
		t.Errorf("stale entry kept after resume: %v", got)
	}
}

func TestPruneEvery(t *testing.T) {
	tb := addresstable.New(logtest.New(t), 10*time.Millisecond, 0)
	tb.Add([]string{"app.apps.internal"}, "10.0.0.1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tb.PruneEvery(ctx, 5*time.Millisecond) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(tb.Lookup("app.apps.internal")) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("entry never pruned")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestWarm(t *testing.T) {
	tb := newTable(t, newClock())
	if tb.IsWarm() {
		t.Fatal("new table is warm")
	}
	tb.SetWarm()
	if !tb.IsWarm() {
		t.Fatal("not warm after SetWarm")
	}
}

// TestConcurrentUse runs writers, readers and the pruner together under
// -race and checks nothing deadlocks.
func TestConcurrentUse(t *testing.T) {
	tb := addresstable.New(logtest.New(t), time.Millisecond, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = tb.PruneEvery(ctx, time.Millisecond) }()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				name := fmt.Sprintf("app%d.apps.internal", i%50)
				ip := fmt.Sprintf("10.0.%d.%d", w, i%200)
				tb.Add([]string{name, fmt.Sprintf("%d.%s", i%200, name)}, ip)
				if i%7 == 0 {
					tb.Remove([]string{name}, ip)
				}
				if i%100 == 0 {
					tb.PausePruning()
					tb.ResumePruning()
				}
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 2000 {
				for _, ip := range tb.Lookup(fmt.Sprintf("APP%d.apps.internal", i%50)) {
					if ip == "" {
						t.Error("empty ip")
					}
				}
				if i%200 == 0 {
					_ = tb.All()
				}
			}
		}()
	}
	wg.Wait()
}
