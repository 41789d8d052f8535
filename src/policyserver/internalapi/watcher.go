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
}

// NewWatcher returns a watcher reading with read every interval while
// anyone waits. Run must be running for waits to be answered.
func NewWatcher(read func(context.Context) (int64, error), interval time.Duration) *Watcher {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	return &Watcher{read: read, interval: interval, changed: make(chan struct{}), wake: make(chan struct{}, 1)}
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
		readCtx, cancel := context.WithTimeout(ctx, pollTimeout)
		v, err := w.read(readCtx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		w.publish(v, err)

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

func (w *Watcher) publish(v int64, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
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
	w.mu.Lock()
	if w.stopped {
		w.mu.Unlock()
		return 0, errNoAnswer
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
		case w.stopped:
			w.mu.Unlock()
			return 0, errNoAnswer
		case w.fresh && w.value != since:
			v := w.value
			w.mu.Unlock()
			return v, nil
		case !w.fresh && w.err != nil && w.seq > startSeq:
			err := w.err
			w.mu.Unlock()
			return 0, err
		}
		ch := w.changed
		w.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			w.mu.Lock()
			defer w.mu.Unlock()
			if w.fresh {
				return w.value, nil
			}
			return 0, errNoAnswer
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		w.mu.Lock()
	}
}
