package agent

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
)

// Long-poll timings.
const (
	// minBackoff is the first retry after a failed policy cycle or
	// long-poll; retries double from there.
	minBackoff      = 500 * time.Millisecond
	maxLongPollWait = 30 * time.Second
	// longPollGap is the least time between two long-polls that came back
	// without a change, so a misbehaving server cannot make us spin.
	longPollGap = 100 * time.Millisecond
)

// longPollTiming is how long one long-poll waits on the server (0: never
// long-poll) and how much longer its request may take.
type longPollTiming struct {
	wait, grace time.Duration
}

// versionFunc reads a version stamp plainly; offered reports whether the
// server offers its long-poll form.
type versionFunc func(ctx context.Context) (v int64, offered bool, err error)

// waitFunc long-polls a version stamp (Client.WaitPolicies), for the
// policies of ids when they are not nil.
type waitFunc func(ctx context.Context, since int64, ids []string, wait, grace time.Duration) (Stamp, error)

// untargeted adapts a long-poll that takes no ids (security groups).
func untargeted(wait func(ctx context.Context, since int64, wait, grace time.Duration) (int64, bool, error)) waitFunc {
	return func(ctx context.Context, since int64, _ []string, w, grace time.Duration) (Stamp, error) {
		v, offered, err := wait(ctx, since, w, grace)
		return Stamp{Value: v, LongPoll: offered}, err
	}
}

// kicker wakes a lifecycle poller (lifecycle.PollOptions.Kick). Its buffer
// of one folds the kicks that come while the cycle runs into one more run.
type kicker chan struct{}

func newKicker() kicker { return make(kicker, 1) }

func (k kicker) kick() {
	select {
	case k <- struct{}{}:
	default:
	}
}

// watcher follows one of policy-server-internal's version stamps
// (policies_last_updated, security_groups_last_updated) for a cycle. The
// cycle asks it for the stamp each tick (current): while a long-poll is
// parked and answering, that is the long-polled value; otherwise it is a
// plain read, upstream's way, which also tells whether the server offers
// the long-poll. The watcher is a lifecycle member: it idles until a
// plain read finds the long-poll offered, then keeps one parked and kicks
// the cycle's poller whenever the stamp moves, and idles again when the
// server stops offering it (an upstream server, or a netman one replaced
// by upstream's).
type watcher struct {
	logger   lager.Logger
	sender   *metrics.Sender
	name     string // log message of failed long-polls; "<name>-not-offered" on fallback
	failures string // counter of failed long-polls
	read     versionFunc
	wait     waitFunc
	timing   longPollTiming
	changed  kicker // the cycle's poller

	offered chan struct{} // a plain read found the long-poll offered

	// Shared between the cycle's poller and the watcher's long-poll.
	seen    atomic.Int64 // newest value observed
	healthy atomic.Bool  // a long-poll is parked and answering

	// advance, when set, is told of an answer saying the policies of ids
	// are unchanged from one stamp to a later one; it reports whether the
	// cycle took the later stamp as its own (else the cycle is kicked).
	advance func(from, to int64, ids []string) bool

	mu      sync.Mutex
	targets *[]string          // ids for long-polls (setTargets); nil: every change
	cancel  context.CancelFunc // ends the parked long-poll (a retarget)
}

// setTargets makes the long-polls ask only about the policies of ids (the
// guids the cycle fetched policies for). A long-poll parked with other ids
// is ended and asked again with these.
func (w *watcher) setTargets(ids []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.targets != nil && slices.Equal(*w.targets, ids) {
		return
	}
	t := append([]string{}, ids...)
	w.targets = &t
	if w.cancel != nil {
		w.cancel()
	}
}

// startPoll returns the ids and context of the next long-poll.
func (w *watcher) startPoll(ctx context.Context) ([]string, context.Context, context.CancelFunc) {
	w.mu.Lock()
	defer w.mu.Unlock()
	pctx, cancel := context.WithCancel(ctx)
	w.cancel = cancel
	if w.targets == nil {
		return nil, pctx, cancel
	}
	return *w.targets, pctx, cancel
}

func newWatcher(logger lager.Logger, sender *metrics.Sender, name, failures string, read versionFunc, wait waitFunc, timing longPollTiming, changed kicker) *watcher {
	timing.wait = min(timing.wait, maxLongPollWait)
	return &watcher{
		logger: logger, sender: sender, name: name, failures: failures,
		read: read, wait: wait, timing: timing, changed: changed,
		offered: make(chan struct{}, 1),
	}
}

// current returns the stamp the coming cycle may trust: the long-polled
// one while the long-poll is healthy, else a plain read.
func (w *watcher) current(ctx context.Context) (int64, error) {
	if w.healthy.Load() {
		return w.seen.Load(), nil
	}
	v, offered, err := w.read(ctx)
	if err != nil {
		return 0, err
	}
	w.seen.Store(v)
	if offered && w.timing.wait > 0 {
		select {
		case w.offered <- struct{}{}:
		default:
		}
	}
	return v, nil
}

// Run is the watcher's member: it long-polls whenever a plain read found
// the long-poll offered, until ctx is done.
func (w *watcher) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.offered:
		}
		w.longPoll(ctx)
	}
}

// longPoll keeps one long-poll parked until ctx is done or the server
// stops offering long-poll. Failures back off exponentially up to the
// longest wait; the cycle's plain reads take over meanwhile.
func (w *watcher) longPoll(ctx context.Context) {
	defer w.healthy.Store(false)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		since := w.seen.Load()
		t0 := time.Now()
		ids, pctx, cancel := w.startPoll(ctx)
		a, err := w.wait(pctx, since, ids, w.timing.wait, w.timing.grace)
		retargeted := pctx.Err() != nil
		cancel()
		if ctx.Err() != nil {
			return
		}
		if retargeted {
			continue // the cycle's guids changed: ask about the new ones
		}
		v, offered := a.Value, a.LongPoll
		if err != nil {
			w.healthy.Store(false)
			w.sender.IncrementCounter(w.failures)
			backoff = min(max(2*backoff, minBackoff), maxLongPollWait)
			w.logger.Error(w.name, err, lager.Data{"retry-in": backoff.String()})
			if !lifecycle.Sleep(ctx, backoff) {
				return
			}
			continue
		}
		if !offered {
			w.healthy.Store(false)
			// Plain reads while this long-poll ran were answered by the
			// server that has just stopped offering it.
			select {
			case <-w.offered:
			default:
			}
			w.logger.Info(w.name+"-not-offered", lager.Data{"fallback": "plain polling"})
			return
		}
		backoff = 0
		w.healthy.Store(true)
		if v != since {
			w.seen.Store(v)
			if !a.Unchanged || w.advance == nil || !w.advance(since, v, ids) {
				w.changed.kick()
			}
		} else if time.Since(t0) < longPollGap && !lifecycle.Sleep(ctx, longPollGap) {
			return
		}
	}
}
