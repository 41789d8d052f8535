package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

// Fatal marks err as one a poller cannot recover from: the poller stops and
// the daemon exits with it. A nil err stays nil.
func Fatal(err error) error {
	if err == nil {
		return nil
	}
	return &fatalError{err: err}
}

// IsFatal reports whether err is, or wraps, an error marked with Fatal.
func IsFatal(err error) bool {
	var f *fatalError
	return errors.As(err, &f)
}

type fatalError struct{ err error }

// Error keeps upstream's "fatal: " prefix, which operators grep for.
func (f *fatalError) Error() string { return "fatal: " + f.err.Error() }
func (f *fatalError) Unwrap() error { return f.err }

// Poller returns a runner that signals ready, calls fn at once, then again
// each time interval plus a random jitter in [0, jitter) has passed since the
// previous call returned; the jitter keeps cells from polling a shared server
// in lockstep. fn's ctx is cancelled when the runner is signalled.
//
// Every error is logged as "poll-cycle" on logger as given (upstream's
// pollers log on the daemon's logger or on a session the caller chose, so
// the caller picks: silk-daemon and the agent pass their root logger,
// policy-server a "policy-cleaner-poller" session). An error marked with
// Fatal then ends the runner with upstream's message,
// `This cell must be restarted (run "bosh restart <job>"): fatal: <err>`;
// any other error lets polling continue. name only labels errors.
func Poller(logger lager.Logger, name string, interval, jitter time.Duration, fn func(context.Context) error) ifrit.Runner {
	return PollerWith(logger, name, interval, PollOptions{Jitter: jitter}, fn)
}

// PollOptions tune a poller beyond its interval.
type PollOptions struct {
	// Jitter adds a random [0, Jitter) to each wait after a call.
	Jitter time.Duration
	// Kick, when it delivers, ends the wait at once: fn runs now and the
	// interval counts again from its return. A daemon kicks its poller
	// when it learns of a change (a long-poll answer, a toggled setting)
	// rather than waiting for the next tick; a kick channel with a buffer
	// of one folds kicks that come while fn runs into one more call.
	Kick <-chan struct{}
	// RetryMin, when positive, waits RetryMin after a failed call instead
	// of the interval, doubling with each failure in a row up to the
	// interval (no jitter): a cycle that failed for a moment (a server
	// restarting) is retried soon, a lasting failure not in a hot loop.
	RetryMin time.Duration
}

// PollerWith is Poller with a kick channel and retry backoff (opts).
func PollerWith(logger lager.Logger, name string, interval time.Duration, opts PollOptions, fn func(context.Context) error) ifrit.Runner {
	return &poller{logger: logger, name: name, interval: interval, opts: opts, fn: fn}
}

type poller struct {
	logger   lager.Logger
	name     string
	interval time.Duration
	opts     PollOptions
	fn       func(context.Context) error
}

func (p *poller) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if p.interval <= 0 {
		return fmt.Errorf("poller %s: interval must be positive, got %s", p.name, p.interval)
	}
	ctx, cancel := cancelOnSignal(signals)
	defer cancel()
	close(ready)

	var backoff time.Duration
	for {
		err := p.fn(ctx)
		if ctx.Err() != nil {
			return nil // signalled: errors from the cut-short cycle don't matter
		}
		delay := nextDelay(p.interval, p.opts.Jitter)
		if err != nil {
			p.logger.Error("poll-cycle", err)
			if IsFatal(err) {
				//lint:ignore ST1005 upstream's exact, capitalised message
				return fmt.Errorf("This cell must be restarted (run \"bosh restart <job>\"): %w", err)
			}
			if p.opts.RetryMin > 0 {
				backoff = min(max(2*backoff, p.opts.RetryMin), p.interval)
				delay = backoff
			}
		} else {
			backoff = 0
		}

		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-p.opts.Kick:
			t.Stop()
		}
	}
}

func nextDelay(interval, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return interval
	}
	return interval + rand.N(jitter)
}

// cancelOnSignal returns a context cancelled when a signal arrives or cancel
// is called, whichever comes first.
func cancelOnSignal(signals <-chan os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-signals:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// Loop returns a runner that signals ready and runs fn until the runner is
// signalled (fn's ctx is then cancelled and a nil return is a clean stop).
// fn returning on its own ends the runner with its error, or
// ErrMemberExited when it returns nil while not signalled.
func Loop(fn func(context.Context) error) ifrit.Runner {
	return ifrit.RunFunc(func(signals <-chan os.Signal, ready chan<- struct{}) error {
		ctx, cancel := cancelOnSignal(signals)
		defer cancel()
		close(ready)
		err := fn(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = ErrMemberExited
		}
		return err
	})
}

// Sleep waits for d or until ctx is done; it reports whether the whole
// wait passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
