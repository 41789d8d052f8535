package internalapi

import (
	"context"
	"errors"
	"github.com/netman-release/netman/src/lifecycle"
	"sync"
	"time"
)

// Long-poll defaults: how often the watcher reads policies_last_updated
// while clients wait, the longest wait a client may ask for, and the
// shortest gap between two reads when local writes keep waking it.
const (
	DefaultWatchInterval = 100 * time.Millisecond
	MaxLongPollWait      = 30 * time.Second
	minPollGap           = 20 * time.Millisecond
	// pollTimeout bounds one read, so a hung database cannot wedge waiters
	// beyond their own deadline.
	pollTimeout = 5 * time.Second
	// loadTimeout bounds one read of a policy watcher (NewPolicyWatcher),
	// which reloads every policy when the stamp moved: on a busy server
	// that takes seconds, and a read given up too early answered every
	// parked long-poll with 500 at once. Waiters still answer at their own
	// wait cap meanwhile.
	loadTimeout = MaxLongPollWait
)

// errNoAnswer means the watcher could not answer a waiter (it is stopped,
// or never completed a read before the waiter's deadline): the handler then
// reads the value itself, exactly as a plain request does.
var errNoAnswer = errors.New("last-updated watcher has no answer")

// Watcher serves long-polls of one version value (policies_last_updated or
// security_groups_last_updated; one Watcher each). A single goroutine
// (Run) reads the value from the store every interval, but only while
// clients wait; each change wakes every waiter at once by closing a
// channel. However many clients wait, the database sees one reader.
type Watcher struct {
	read     func(context.Context) (int64, error)
	interval time.Duration

	mu      sync.Mutex
	waiters int
	fresh   bool  // value comes from a read of the running watcher, at most ~interval old
	value   int64 // latest value read
	err     error // error of the latest read, when it failed
	seq     uint64
	changed chan struct{} // closed and replaced when value, fresh or err change
	stopped bool

	wake chan struct{} // first waiter arrived, or a local write happened

	readTimeout time.Duration // bound of one read: pollTimeout, loadTimeout

	// differ and log serve targeted waits (NewPolicyWatcher); log is
	// guarded by mu.
	differ *policyDiffer
	log    changeLog
}

// NewWatcher returns a watcher reading with read every interval while
// anyone waits. Run must be running for waits to be answered.
func NewWatcher(read func(context.Context) (int64, error), interval time.Duration) *Watcher {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return &Watcher{read: read, interval: interval, changed: make(chan struct{}), wake: make(chan struct{}, 1), readTimeout: pollTimeout}
}

// NewPolicyWatcher returns a watcher of the policies' stamp that also
// answers targeted waits (WaitFor): it reads the stamp through snapshot,
// which loads the policies on each change, and logs which guids each
// change touched.
func NewPolicyWatcher(snapshot PolicySnapshot, interval time.Duration) *Watcher {
	w := NewWatcher(nil, interval)
	w.differ = &policyDiffer{snapshot: snapshot}
	w.readTimeout = loadTimeout
	return w
}

// Notify tells the watcher that this process just wrote to the store, so
// waiters learn of a change without waiting for the next tick. It never
// blocks; bursts coalesce into one read.
func (w *Watcher) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Run reads while there are waiters until ctx is done; then it releases
// every waiter (they answer with a read of their own) and returns nil.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.stop()
	var last time.Time
	for {
		if !w.awaitWaiters(ctx) {
			return nil
		}
		if gap := time.Since(last); gap < minPollGap {
			if !lifecycle.Sleep(ctx, minPollGap-gap) {
				return nil
			}
		}
		last = time.Now()
		readCtx, cancel := context.WithTimeout(ctx, w.readTimeout)
		v, st, err := w.readOnce(readCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		w.publish(v, st, err)

		t := time.NewTimer(w.interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-w.wake:
			t.Stop()
		}
	}
}

// awaitWaiters returns once someone waits (true) or ctx is done (false).
// While idle the cached value goes stale: nobody is keeping it current.
func (w *Watcher) awaitWaiters(ctx context.Context) bool {
	w.mu.Lock()
	for w.waiters == 0 {
		w.fresh = false
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-w.wake:
		}
		w.mu.Lock()
	}
	w.mu.Unlock()
	return true
}

func (w *Watcher) readOnce(ctx context.Context) (int64, step, error) {
	if w.differ != nil {
		return w.differ.read(ctx)
	}
	v, err := w.read(ctx)
	return v, step{}, err
}

func (w *Watcher) publish(v int64, st step, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err == nil && st.logged {
		w.log.add(v, st.touched, st.first)
	}
	w.seq++
	if err != nil {
		w.fresh, w.err = false, err
		w.broadcast()
		return
	}
	changed := !w.fresh || v != w.value
	w.fresh, w.value, w.err = true, v, nil
	if changed {
		w.broadcast()
	}
}

func (w *Watcher) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped, w.fresh = true, false
	w.broadcast()
}

// broadcast wakes every current waiter; w.mu must be held.
func (w *Watcher) broadcast() {
	close(w.changed)
	w.changed = make(chan struct{})
}

// Wait returns the current value as soon as it differs from since, or the
// (unchanged) value once wait has passed. A failed read is returned as its
// error; errNoAnswer means the caller must read the value itself.
func (w *Watcher) Wait(ctx context.Context, since int64, wait time.Duration) (int64, error) {
	a, err := w.WaitFor(ctx, since, nil, wait)
	return a.Value, err
}

// Answer is what WaitFor returns.
type Answer struct {
	Value int64
	// Unchanged is set when Value is a later stamp than since at which
	// the waiter's policies are the same as at since (nothing in
	// between touched its ids).
	Unchanged bool
}

// WaitFor is Wait for a client that only cares about the policies of ids:
// it returns the current value as soon as a change after since touched one
// of them, or at once when the log no longer reaches back to since; once
// wait has passed, or when the watcher stops, it returns the latest stamp
// up to which no change touched them (Unchanged when that is not since).
// With ids nil, or on a watcher without a log (NewWatcher), it is Wait.
func (w *Watcher) WaitFor(ctx context.Context, since int64, ids map[string]struct{}, wait time.Duration) (Answer, error) {
	t := target{since: since, ids: ids, upTo: since}
	targeted := ids != nil && w.differ != nil
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return Answer{}, errNoAnswer
	}
	w.waiters++
	if w.waiters == 1 {
		w.Notify()
	}
	startSeq := w.seq
	defer func() {
		w.mu.Lock()
		w.waiters--
		w.mu.Unlock()
	}()

	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		switch {
		case w.stopped && targeted:
			// Shutting down: tell the client what is known so far, so
			// it need not fetch when it comes back.
			w.mu.Unlock()
			return t.answer(), nil
		case w.stopped:
			w.mu.Unlock()
			return Answer{}, errNoAnswer
		case w.fresh && w.value != since && (!targeted || w.touched(&t)):
			v := w.value
			w.mu.Unlock()
			return Answer{Value: v}, nil
		case !w.fresh && w.err != nil && w.seq > startSeq:
			err := w.err
			w.mu.Unlock()
			return Answer{}, err
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			switch {
			case targeted:
				return t.answer(), nil
			case w.fresh:
				return Answer{Value: w.value}, nil
			}
			return Answer{}, errNoAnswer
		case <-ctx.Done():
			return Answer{}, ctx.Err()
		}
		w.mu.Lock()
	}
}

// target is a targeted waiter's progress through the change log.
type target struct {
	since int64
	ids   map[string]struct{}
	pos   uint64 // seq of the last log entry judged (0: since not located yet)
	upTo  int64  // stamp of that entry: no change up to it touched ids
}

func (t *target) answer() Answer { return Answer{Value: t.upTo, Unchanged: t.upTo != t.since} }

// touched reports whether the fresh value, which differs from since,
// answers a targeted waiter: a change after since touched its ids, or the
// log does not reach back to since. Otherwise it records how far the log
// was judged. w.mu must be held.
func (w *Watcher) touched(t *target) bool {
	if t.pos == 0 {
		if t.pos = w.log.find(t.since); t.pos == 0 {
			return true
		}
	}
	touched, last, version := w.log.touchedAfter(t.pos, t.ids)
	if !touched {
		t.pos, t.upTo = last, version
	}
	return touched
}
