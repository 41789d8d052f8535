package internalapi

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
