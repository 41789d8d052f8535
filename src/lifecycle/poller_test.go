package lifecycle_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/testsupport/eventually"
)

func TestPollerRunsImmediatelyThenEveryInterval(t *testing.T) {
	var calls atomic.Int32
	logger, _ := newTestLogger()
	fn := func(context.Context) error { calls.Add(1); return nil }

	// Long interval: only the immediate call can happen.
	p := startProcess(t, lifecycle.Poller(logger, "slow", time.Hour, 0, fn))
	eventually.True(t, "first cycle", 5*time.Second, func() bool { return calls.Load() == 1 })
	time.Sleep(30 * time.Millisecond)
	if n := calls.Load(); n != 1 {
		t.Errorf("cycles with a 1h interval = %d, want 1", n)
	}
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}

	calls.Store(0)
	p = startProcess(t, lifecycle.Poller(logger, "fast", 5*time.Millisecond, 5*time.Millisecond, fn))
	eventually.True(t, "several cycles", 5*time.Second, func() bool { return calls.Load() >= 3 })
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
}

func TestPollerKick(t *testing.T) {
	logger, _ := newTestLogger()
	var calls atomic.Int32
	gate := make(chan struct{})
	fn := func(context.Context) error {
		if calls.Add(1) == 3 {
			<-gate
		}
		return nil
	}
	kick := make(chan struct{}, 1)
	send := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	p := startProcess(t, lifecycle.PollerWith(logger, "kicked", time.Hour, lifecycle.PollOptions{Kick: kick}, fn))
	eventually.True(t, "first cycle", 5*time.Second, func() bool { return calls.Load() == 1 })
	send()
	eventually.True(t, "kicked cycle", 5*time.Second, func() bool { return calls.Load() == 2 })
	// Kicks while a call runs fold into one more call.
	send()
	eventually.True(t, "third cycle running", 5*time.Second, func() bool { return calls.Load() == 3 })
	send()
	send()
	close(gate)
	eventually.True(t, "one cycle for the kicks during the last", 5*time.Second, func() bool { return calls.Load() == 4 })
	time.Sleep(30 * time.Millisecond)
	if n := calls.Load(); n != 4 {
		t.Errorf("cycles = %d, want 4 (the 1h interval never passed)", n)
	}
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
}

// TestPollerRetryBackoff: failed calls are retried after RetryMin,
// doubling up to the interval; a success resets the backoff.
func TestPollerRetryBackoff(t *testing.T) {
	logger, _ := newTestLogger()
	const retryMin, interval = 10 * time.Millisecond, 100 * time.Millisecond
	var mu sync.Mutex
	var at []time.Time
	fn := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) == 7 {
			return nil
		}
		return errors.New("server down")
	}
	p := startProcess(t, lifecycle.PollerWith(logger, "retrying", interval, lifecycle.PollOptions{RetryMin: retryMin}, fn))
	eventually.True(t, "nine calls", 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(at) >= 9 })
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	// The wait before call i+1: five doubling retries capped at the
	// interval, the interval after the success, then RetryMin again.
	want := []time.Duration{10, 20, 40, 80, 100, 100, 100, 10}
	for i, w := range want {
		w *= time.Millisecond
		gap := at[i+1].Sub(at[i])
		if gap < w {
			t.Errorf("wait %d = %s, want at least %s", i, gap, w)
		}
		if w < interval && gap >= interval || w == interval && gap >= 2*interval {
			t.Errorf("wait %d = %s, want about %s", i, gap, w)
		}
	}
}

func TestPollerErrors(t *testing.T) {
	inner := errors.New("lease gone")
	tests := []struct {
		name       string
		err        error
		wantExit   string // "" means polling continues
		wantLogged bool
	}{
		{name: "non-fatal is logged and polling continues", err: errors.New("controller unreachable"), wantLogged: true},
		{
			name:     "fatal ends the poller",
			err:      lifecycle.Fatal(inner),
			wantExit: `This cell must be restarted (run "bosh restart <job>"): fatal: lease gone`,
		},
		{
			name:     "wrapped fatal ends the poller",
			err:      fmt.Errorf("renew: %w", lifecycle.Fatal(inner)),
			wantExit: `This cell must be restarted (run "bosh restart <job>"): renew: fatal: lease gone`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			logger, sink := newTestLogger()
			fn := func(context.Context) error { calls.Add(1); return tt.err }
			p := startProcess(t, lifecycle.Poller(logger, "vxlan-poller", time.Millisecond, 0, fn))

			if tt.wantExit != "" {
				err := waitExit(t, p)
				if err == nil || err.Error() != tt.wantExit {
					t.Fatalf("exit = %v, want %q", err, tt.wantExit)
				}
				if !lifecycle.IsFatal(err) || !errors.Is(err, inner) {
					t.Errorf("exit error %v lost its fatal mark or cause", err)
				}
				if calls.Load() != 1 {
					t.Errorf("cycles = %d, want 1", calls.Load())
				}
				// Logged first, as upstream's poller does, on the logger as given.
				logs := sink.find("test.poll-cycle")
				if len(logs) != 1 || logs[0].LogLevel != lager.ERROR || logs[0].Data["error"] != tt.err.Error() {
					t.Errorf("poll-cycle logs = %+v, want one error line with %q", logs, tt.err)
				}
				return
			}

			eventually.True(t, "polling to continue", 5*time.Second, func() bool { return calls.Load() >= 3 })
			if err := stopProcess(t, p); err != nil {
				t.Errorf("exit = %v", err)
			}
			logs := sink.find("test.poll-cycle")
			if len(logs) < 3 {
				t.Fatalf("poll-cycle logs = %d, want one per failed cycle", len(logs))
			}
			if logs[0].LogLevel != lager.ERROR || logs[0].Data["error"] != tt.err.Error() {
				t.Errorf("log = %+v", logs[0])
			}
		})
	}
}

func TestPollerSignalCancelsCycle(t *testing.T) {
	logger, sink := newTestLogger()
	entered := make(chan struct{})
	fn := func(ctx context.Context) error {
		close(entered)
		<-ctx.Done()
		return fmt.Errorf("poll: %w", ctx.Err())
	}
	p := startProcess(t, lifecycle.Poller(logger, "p", time.Hour, 0, fn))
	<-entered
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v, want nil", err)
	}
	if logs := sink.find("test.poll-cycle"); len(logs) != 0 {
		t.Errorf("cancelled cycle logged as a failure: %+v", logs)
	}
}

func TestPollerInvalidInterval(t *testing.T) {
	logger, _ := newTestLogger()
	p := ifrit.Background(lifecycle.Poller(logger, "p", 0, 0, func(context.Context) error { return nil }))
	if err := waitExit(t, p); err == nil {
		t.Error("zero interval: want error")
	}
}

func TestNextDelayJitterBounds(t *testing.T) {
	tests := []struct {
		interval, jitter time.Duration
	}{
		{100 * time.Millisecond, 50 * time.Millisecond},
		{5 * time.Second, time.Second},
		{time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.interval, "+", tt.jitter), func(t *testing.T) {
			lo, hi := time.Duration(1<<62), time.Duration(0)
			for range 10000 {
				d := lifecycle.NextDelay(tt.interval, tt.jitter)
				if d < tt.interval || d >= tt.interval+tt.jitter {
					t.Fatalf("delay %s outside [%s, %s)", d, tt.interval, tt.interval+tt.jitter)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			if tt.jitter > 1 && lo == hi {
				t.Errorf("no jitter applied: every delay was %s", lo)
			}
		})
	}
	for _, j := range []time.Duration{0, -time.Second} {
		if d := lifecycle.NextDelay(time.Second, j); d != time.Second {
			t.Errorf("jitter %s: delay = %s, want exactly the interval", j, d)
		}
	}
}

func TestFatal(t *testing.T) {
	base := errors.New("x")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"fatal", lifecycle.Fatal(base), true},
		{"wrapped fatal", fmt.Errorf("ctx: %w", lifecycle.Fatal(base)), true},
	}
	for _, tt := range tests {
		if got := lifecycle.IsFatal(tt.err); got != tt.want {
			t.Errorf("%s: IsFatal = %v, want %v", tt.name, got, tt.want)
		}
	}
	if lifecycle.Fatal(nil) != nil {
		t.Error("Fatal(nil) != nil")
	}
	if got := lifecycle.Fatal(base).Error(); got != "fatal: x" {
		t.Errorf("Fatal(x).Error() = %q", got)
	}
	if !errors.Is(lifecycle.Fatal(base), base) {
		t.Error("Fatal does not unwrap to its cause")
	}
}
