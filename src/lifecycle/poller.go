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
	return &poller{logger: logger, name: name, interval: interval, jitter: jitter, fn: fn}
}

type poller struct {
	logger   lager.Logger
	name     string
	interval time.Duration
	jitter   time.Duration
	fn       func(context.Context) error
}

func (p *poller) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if p.interval <= 0 {
		return fmt.Errorf("poller %s: interval must be positive, got %s", p.name, p.interval)
	}
	ctx, cancel := cancelOnSignal(signals)
	defer cancel()
	close(ready)

	for {
		err := p.fn(ctx)
		if ctx.Err() != nil {
			return nil // signalled: errors from the cut-short cycle don't matter
		}
		if err != nil {
			p.logger.Error("poll-cycle", err)
			if IsFatal(err) {
				//lint:ignore ST1005 upstream's exact, capitalised message
				return fmt.Errorf("This cell must be restarted (run \"bosh restart <job>\"): %w", err)
			}
		}

		t := time.NewTimer(nextDelay(p.interval, p.jitter))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
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
