package internalapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// versionStore is a stateful stand-in for the store's LastUpdated: a value
// that changes when set, a switchable failure, and a count of reads, which
// is the database load the watcher causes.
type versionStore struct {
	mu    sync.Mutex
	value int64
	err   error
	reads atomic.Int64
}

func (s *versionStore) LastUpdated(context.Context) (int64, error) {
	s.reads.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.value, s.err
}

func (s *versionStore) set(v int64) {
	s.mu.Lock()
	s.value = v
	s.mu.Unlock()
}

func (s *versionStore) fail(err error) {
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

func startWatcher(t *testing.T, s *versionStore, interval time.Duration) *Watcher {
	t.Helper()
	w := NewWatcher(s.LastUpdated, interval)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return w
}

type waitResult struct {
	v   int64
	err error
	d   time.Duration
}

func waitAsync(w *Watcher, since int64, wait time.Duration) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		start := time.Now()
		v, err := w.Wait(context.Background(), since, wait)
		ch <- waitResult{v, err, time.Since(start)}
	}()
	return ch
}

func TestWaitAnswersAtOnceWhenTheClientIsBehind(t *testing.T) {
	s := &versionStore{value: 7}
	w := startWatcher(t, s, time.Hour) // only the first read can answer
	r := <-waitAsync(w, 3, 10*time.Second)
	if r.err != nil || r.v != 7 || r.d > 2*time.Second {
		t.Fatalf("Wait = %d, %v after %s; want 7 at once", r.v, r.err, r.d)
	}
}

func TestWaitReturnsPromptlyOnChange(t *testing.T) {
	s := &versionStore{value: 7}
	w := startWatcher(t, s, 50*time.Millisecond)
	res := waitAsync(w, 7, 20*time.Second)
	select {
	case r := <-res:
		t.Fatalf("returned %d, %v before any change", r.v, r.err)
	case <-time.After(300 * time.Millisecond):
	}
	changed := time.Now()
	s.set(8)
	r := <-res
	if r.err != nil || r.v != 8 {
		t.Fatalf("Wait = %d, %v; want 8", r.v, r.err)
	}
	if lag := time.Since(changed); lag > 2*time.Second {
		t.Fatalf("change noticed after %s", lag)
	}
}

func TestWaitTimesOutWithTheSameValue(t *testing.T) {
	s := &versionStore{value: 7}
	w := startWatcher(t, s, 20*time.Millisecond)
	r := <-waitAsync(w, 7, 300*time.Millisecond)
	if r.err != nil || r.v != 7 {
		t.Fatalf("Wait = %d, %v; want 7", r.v, r.err)
	}
	if r.d < 300*time.Millisecond {
		t.Fatalf("returned after %s, before the wait was over", r.d)
	}
}

// However many clients wait, the database sees one reader: reads follow the
// poll interval, not the number of waiters.
func TestManyWaitersShareOneReader(t *testing.T) {
	s := &versionStore{value: 1}
	const interval, waiters, wait = 50 * time.Millisecond, 500, time.Second
	w := startWatcher(t, s, interval)

	results := make([]<-chan waitResult, waiters)
	for i := range results {
		results[i] = waitAsync(w, 1, wait)
	}
	time.Sleep(wait / 2)
	s.set(2)
	for i, ch := range results {
		if r := <-ch; r.err != nil || r.v != 2 {
			t.Fatalf("waiter %d = %d, %v; want 2", i, r.v, r.err)
		}
	}
	// About (wait/2)/interval ticks plus wake-ups; 500 waiters polling on
	// their own would be thousands.
	if reads := s.reads.Load(); reads > 40 {
		t.Fatalf("%d reads for %d waiters over %s", reads, waiters, wait/2)
	}
}

func TestWatcherIsIdleWithoutWaiters(t *testing.T) {
	s := &versionStore{value: 1}
	w := startWatcher(t, s, 10*time.Millisecond)
	<-waitAsync(w, 1, 50*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // let the watcher notice it is alone
	before := s.reads.Load()
	time.Sleep(300 * time.Millisecond)
	if after := s.reads.Load(); after != before {
		t.Fatalf("%d reads while nobody waited", after-before)
	}
	w.Notify() // a local write with nobody waiting reads nothing either
	time.Sleep(50 * time.Millisecond)
	if after := s.reads.Load(); after != before {
		t.Fatalf("Notify without waiters caused %d reads", after-before)
	}

	// The next waiter must not be answered from the stale cache.
	s.set(5)
	if r := <-waitAsync(w, 1, 5*time.Second); r.v != 5 || r.err != nil {
		t.Fatalf("Wait after idling = %d, %v; want 5", r.v, r.err)
	}
}

func TestNotifyReadsAtOnce(t *testing.T) {
	s := &versionStore{value: 1}
	w := startWatcher(t, s, time.Hour)
	res := waitAsync(w, 1, 20*time.Second)
	time.Sleep(100 * time.Millisecond) // the waiter's first read is done
	s.set(2)
	w.Notify()
	select {
	case r := <-res:
		if r.v != 2 || r.err != nil {
			t.Fatalf("Wait = %d, %v; want 2", r.v, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Notify did not wake the watcher")
	}
}

func TestWaitReportsReadFailures(t *testing.T) {
	s := &versionStore{value: 1}
	w := startWatcher(t, s, 20*time.Millisecond)
	res := waitAsync(w, 1, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	boom := errors.New("db down")
	s.fail(boom)
	select {
	case r := <-res:
		if !errors.Is(r.err, boom) {
			t.Fatalf("Wait = %d, %v; want the read error", r.v, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a failing read did not end the wait")
	}
}

func TestStoppedWatcherLeavesTheAnswerToTheCaller(t *testing.T) {
	s := &versionStore{value: 1}
	w := NewWatcher(s.LastUpdated, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	res := waitAsync(w, 1, 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	select {
	case r := <-res:
		if !errors.Is(r.err, errNoAnswer) {
			t.Fatalf("Wait after stop = %d, %v; want errNoAnswer", r.v, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stopping the watcher did not release the waiter")
	}
	if _, err := w.Wait(context.Background(), 1, time.Second); !errors.Is(err, errNoAnswer) {
		t.Fatalf("Wait on a stopped watcher = %v", err)
	}
}

func TestWaitEndsWithTheClient(t *testing.T) {
	s := &versionStore{value: 1}
	w := startWatcher(t, s, 20*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	if _, err := w.Wait(ctx, 1, 20*time.Second); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v; want context.Canceled", err)
	}
}

// policySet is a stateful stand-in for the store's PolicySnapshot: a
// policy set whose stamp moves with every change.
type policySet struct {
	mu       sync.Mutex
	version  int64
	policies []policy.Policy
	loaded   int64         // version of the last read
	load     time.Duration // a read at a new version takes this long
}

func (s *policySet) PolicySnapshot(ctx context.Context) (int64, []policy.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version != s.loaded && s.load > 0 {
		select {
		case <-time.After(s.load):
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		}
	}
	s.loaded = s.version
	return s.version, s.policies, nil
}

// set replaces the policies and returns the new stamp.
func (s *policySet) set(ps ...policy.Policy) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version++
	s.policies = ps
	return s.version
}

func startPolicyWatcher(t *testing.T, s *policySet, interval time.Duration) *Watcher {
	t.Helper()
	w := NewPolicyWatcher(s.PolicySnapshot, interval)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
	return w
}

func idSet(ids ...string) map[string]struct{} {
	out := map[string]struct{}{}
	for _, id := range ids {
		out[id] = struct{}{}
	}
	return out
}

func waitForAsync(w *Watcher, since int64, ids map[string]struct{}, wait time.Duration) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		start := time.Now()
		a, err := w.WaitFor(context.Background(), since, ids, wait)
		ch <- waitResult{a.Value, err, time.Since(start)}
	}()
	return ch
}

func pol(src, dst string, port int) policy.Policy {
	return policy.NewPolicy(src, dst, "tcp", port, port)
}

// A change wakes the long-polls naming its source or destination app (or
// naming nothing), and no other: they answer since when their wait is over.
func TestTargetedWaitWakesOnlyTheTouchedApps(t *testing.T) {
	s := &policySet{}
	base := s.set(pol("app-a", "app-b", 8080), pol("app-c", "app-d", 8080))
	w := startPolicyWatcher(t, s, 10*time.Millisecond)

	const wait = 1500 * time.Millisecond
	waiters := map[string]<-chan waitResult{
		"source app":        waitForAsync(w, base, idSet("app-x", "app-a"), wait),
		"destination app":   waitForAsync(w, base, idSet("app-b"), wait),
		"untargeted":        waitAsync(w, base, wait),
		"unrelated apps":    waitForAsync(w, base, idSet("app-c", "app-d", "space-1"), wait),
		"no apps on a cell": waitForAsync(w, base, idSet(""), wait),
	}
	time.Sleep(100 * time.Millisecond)
	changed := s.set(pol("app-a", "app-b", 8080), pol("app-a", "app-b", 9090), pol("app-c", "app-d", 8080))
	woken := map[string]bool{"source app": true, "destination app": true, "untargeted": true}
	for name, ch := range waiters {
		r := <-ch
		// An untouched waiter learns at the end of its wait that its
		// policies are unchanged up to the new stamp.
		want, within := changed, wait+time.Second
		if woken[name] {
			within = wait / 2
		}
		if r.err != nil || r.v != want || r.d > within || (!woken[name] && r.d < wait) {
			t.Errorf("%s: WaitFor = %d, %v after %s; want %d (woken %v)", name, r.v, r.err, r.d, want, woken[name])
		}
	}

	// A deleted policy touches both of its apps too; a tag reassigned
	// to an app changes its policies.
	ab, cd := pol("app-a", "app-b", 8080), pol("app-c", "app-d", 8080)
	retagged := cd
	retagged.Destination.Tag = "00FF"
	for _, tc := range []struct {
		name          string
		before, after []policy.Policy
		ids           map[string]struct{}
		woken         bool
	}{
		{"delete wakes the destination", []policy.Policy{ab, cd}, []policy.Policy{cd}, idSet("app-b"), true},
		{"delete wakes the source", []policy.Policy{ab, cd}, []policy.Policy{cd}, idSet("app-a"), true},
		{"delete leaves others", []policy.Policy{ab, cd}, []policy.Policy{ab}, idSet("app-a", "app-b"), false},
		{"retag wakes the source", []policy.Policy{ab, cd}, []policy.Policy{ab, retagged}, idSet("app-c"), true},
		{"retag leaves others", []policy.Policy{ab, cd}, []policy.Policy{ab, retagged}, idSet("app-a"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			since := s.set(tc.before...)
			time.Sleep(50 * time.Millisecond)
			res := waitForAsync(w, since, tc.ids, 500*time.Millisecond)
			time.Sleep(50 * time.Millisecond)
			now := s.set(tc.after...)
			r := <-res
			if r.v != now || tc.woken != (r.d < 500*time.Millisecond) || r.err != nil {
				t.Errorf("WaitFor = %d, %v after %s; since %d, now %d", r.v, r.err, r.d, since, now)
			}
		})
	}
}

// The answer after an untouched wait says so: a later stamp marked
// Unchanged, or since itself when nothing was written.
func TestTargetedWaitAnswersUnchangedUpToTheLatestStamp(t *testing.T) {
	s := &policySet{}
	base := s.set(pol("app-a", "app-b", 1))
	w := startPolicyWatcher(t, s, 10*time.Millisecond)
	if a, err := w.WaitFor(context.Background(), base, idSet("app-z"), 100*time.Millisecond); err != nil || a != (Answer{Value: base}) {
		t.Fatalf("WaitFor with no write = %+v, %v", a, err)
	}
	res := make(chan Answer, 1)
	go func() {
		a, _ := w.WaitFor(context.Background(), base, idSet("app-z"), 500*time.Millisecond)
		res <- a
	}()
	time.Sleep(100 * time.Millisecond)
	now := s.set(pol("app-a", "app-b", 2))
	if a := <-res; a != (Answer{Value: now, Unchanged: true}) {
		t.Fatalf("WaitFor after an untouching write = %+v; want {%d true}", a, now)
	}
	// The client resumes from the answer: a touching change wakes it.
	res2 := make(chan Answer, 1)
	go func() {
		a, _ := w.WaitFor(context.Background(), now, idSet("app-z"), 5*time.Second)
		res2 <- a
	}()
	time.Sleep(100 * time.Millisecond)
	touched := s.set(pol("app-a", "app-b", 2), pol("app-z", "app-b", 3))
	if a := <-res2; a != (Answer{Value: touched}) {
		t.Fatalf("WaitFor after a touching write = %+v; want {%d false}", a, touched)
	}
}

// A since the log does not hold (dropped from it, or never seen) answers
// at once.
func TestTargetedWaitAnswersAtOnceBeyondTheLog(t *testing.T) {
	s := &policySet{}
	old := s.set(pol("app-a", "app-b", 1))
	w := NewPolicyWatcher(s.PolicySnapshot, 5*time.Millisecond)
	w.log.limit = 3
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	// A waiter keeps the watcher reading while the log moves on.
	keep, stopKeep := context.WithCancel(context.Background())
	defer stopKeep()
	go func() { _, _ = w.WaitFor(keep, old, idSet("app-y"), time.Minute) }()
	for !w.logged(old) {
		time.Sleep(time.Millisecond)
	}
	for i := range 4 {
		s.set(pol("app-a", "app-b", 2+i))
		for !w.logged(s.version) {
			time.Sleep(time.Millisecond)
		}
	}
	if w.logged(old) {
		t.Fatal("the log kept more than its limit")
	}
	for name, since := range map[string]int64{"dropped from the log": old, "never seen": s.version + 100} {
		start := time.Now()
		a, err := w.WaitFor(context.Background(), since, idSet("app-z"), 20*time.Second)
		if a != (Answer{Value: s.version}) || err != nil || time.Since(start) > 2*time.Second {
			t.Errorf("%s: WaitFor = %+v, %v after %s; want %d at once", name, a, err, time.Since(start), s.version)
		}
	}
	// One still in the log waits.
	res := waitForAsync(w, s.version, idSet("app-z"), 300*time.Millisecond)
	if r := <-res; r.d < 300*time.Millisecond || r.v != s.version {
		t.Errorf("WaitFor(since in the log) = %d after %s; want it to wait", r.v, r.d)
	}
}

// Reloading the policies after a change may take longer than a stamp read
// may (a busy server took seconds at 60,000 policies): a slow reload must
// not answer every parked long-poll with a read failure.
func TestSlowReloadDoesNotFailWaiters(t *testing.T) {
	s := &policySet{}
	base := s.set(pol("app-a", "app-b", 1))
	w := startPolicyWatcher(t, s, 10*time.Millisecond)
	res := waitForAsync(w, base, idSet("app-a"), 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	s.mu.Lock()
	s.load = pollTimeout + 500*time.Millisecond
	s.mu.Unlock()
	now := s.set(pol("app-a", "app-b", 2))
	if r := <-res; r.err != nil || r.v != now {
		t.Fatalf("WaitFor across a slow reload = %d, %v; want %d", r.v, r.err, now)
	}
}

// Stopping the watcher answers targeted waiters at once with what is
// known, so shutdown does not wait for them and clients need not fetch.
func TestStoppedWatcherAnswersTargetedWaiters(t *testing.T) {
	s := &policySet{}
	base := s.set(pol("app-a", "app-b", 1))
	w := NewPolicyWatcher(s.PolicySnapshot, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	res := waitForAsync(w, base, idSet("app-z"), 20*time.Second)
	time.Sleep(100 * time.Millisecond)
	now := s.set(pol("app-a", "app-b", 2))
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	select {
	case r := <-res:
		if r.v != now || r.err != nil {
			t.Fatalf("WaitFor after stop = %d, %v; want %d", r.v, r.err, now)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stopping the watcher did not release the targeted waiter")
	}
}

// logged reports whether the log holds version.
func (w *Watcher) logged(version int64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.find(version) != 0
}
