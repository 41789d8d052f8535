package lifecycle_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/testsupport/eventually"
)

type runResult struct{ err error }

func runAsync(ctx context.Context, logger lager.Logger, members ...lifecycle.Member) <-chan runResult {
	done := make(chan runResult, 1)
	go func() { done <- runResult{lifecycle.RunContext(ctx, logger, members...)} }()
	return done
}

func wait(t *testing.T, done <-chan runResult) error {
	t.Helper()
	select {
	case r := <-done:
		return r.err
	case <-time.After(5 * time.Second):
		t.Fatal("RunContext did not return")
		return nil
	}
}

func members(ms ...*fakeMember) []lifecycle.Member {
	var out []lifecycle.Member
	for _, m := range ms {
		out = append(out, lifecycle.Member{Name: m.name, Runner: m})
	}
	return out
}

func TestRunContextStartsInOrderAndStopsInReverse(t *testing.T) {
	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec, gate: make(chan struct{})}
	b := &fakeMember{name: "b", rec: rec}
	c := &fakeMember{name: "c", rec: rec}
	logger, sink := newTestLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(ctx, logger, members(a, b, c)...)

	// b must not start until a is ready.
	eventually.True(t, "a to start", 5*time.Second, func() bool { return rec.has("start a") })
	time.Sleep(50 * time.Millisecond)
	if diff := cmp.Diff([]string{"start a"}, rec.get()); diff != "" {
		t.Fatalf("before a is ready (-want +got):\n%s", diff)
	}
	close(a.gate)
	eventually.True(t, "c to be ready", 5*time.Second, func() bool { return rec.has("ready c") })
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("RunContext = %v, want nil on cancellation", err)
	}

	want := []string{"start a", "ready a", "start b", "ready b", "start c", "ready c", "stop c", "stop b", "stop a"}
	if diff := cmp.Diff(want, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}

	// Debug only, and never upstream's lifecycle names ("starting",
	// "exited", ...), which each daemon logs once itself.
	var logged []string
	for _, l := range sink.all() {
		if l.LogLevel != lager.DEBUG {
			t.Errorf("group line %q at level %v, want debug", l.Message, l.LogLevel)
		}
		logged = append(logged, l.Message+" "+l.Data["member"].(string))
	}
	wantLogs := []string{
		"test.member-starting a", "test.member-ready a",
		"test.member-starting b", "test.member-ready b",
		"test.member-starting c", "test.member-ready c",
		"test.member-exited c", "test.member-exited b", "test.member-exited a",
	}
	if diff := cmp.Diff(wantLogs, logged); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}

func TestRunContextMemberFailures(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name string
		// setup configures b (and maybe others) and returns what to do once
		// the group is running, if anything.
		setup    func(a, b, c *fakeMember) func()
		wantErr  error
		wantMsg  string
		want     []string
		wantLogs []string // messages of error-level logs
	}{
		{
			name: "failure after ready stops the others in reverse",
			setup: func(a, b, c *fakeMember) func() {
				b.fail = make(chan error, 1)
				return func() { b.fail <- boom }
			},
			wantErr: boom,
			wantMsg: "b: boom",
			want:    []string{"start a", "ready a", "start b", "ready b", "start c", "ready c", "exit b", "stop c", "stop a"},
		},
		{
			name: "failure before ready stops the started ones and starts no more",
			setup: func(a, b, c *fakeMember) func() {
				b.startErr = boom
				return nil
			},
			wantErr: boom,
			wantMsg: "b: boom",
			want:    []string{"start a", "ready a", "start b", "stop a"},
		},
		{
			name: "clean exit of a member is an error",
			setup: func(a, b, c *fakeMember) func() {
				c.fail = make(chan error, 1)
				return func() { c.fail <- nil }
			},
			wantErr: lifecycle.ErrMemberExited,
			wantMsg: "c: exited unexpectedly",
			want:    []string{"start a", "ready a", "start b", "ready b", "start c", "ready c", "exit c", "stop b", "stop a"},
		},
		{
			name: "first of several failures is returned, later ones logged",
			setup: func(a, b, c *fakeMember) func() {
				c.fail = make(chan error, 1)
				a.stopErr = errors.New("a stop failed")
				return func() { c.fail <- boom }
			},
			wantErr:  boom,
			wantMsg:  "c: boom",
			want:     []string{"start a", "ready a", "start b", "ready b", "start c", "ready c", "exit c", "stop b", "stop a"},
			wantLogs: []string{"test.member-exited-with-failure"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			a := &fakeMember{name: "a", rec: rec}
			b := &fakeMember{name: "b", rec: rec}
			c := &fakeMember{name: "c", rec: rec}
			trigger := tt.setup(a, b, c)
			logger, sink := newTestLogger()
			done := runAsync(context.Background(), logger, members(a, b, c)...)
			if trigger != nil {
				eventually.True(t, "c to be ready", 5*time.Second, func() bool { return rec.has("ready c") })
				trigger()
			}
			err := wait(t, done)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("RunContext = %v, want %v", err, tt.wantErr)
			}
			if err.Error() != tt.wantMsg {
				t.Errorf("error = %q, want %q", err, tt.wantMsg)
			}
			if diff := cmp.Diff(tt.want, rec.get()); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			var errLogs []string
			for _, l := range sink.all() {
				if l.LogLevel == lager.ERROR {
					errLogs = append(errLogs, l.Message)
				}
			}
			if diff := cmp.Diff(tt.wantLogs, errLogs); diff != "" {
				t.Errorf("error logs (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunContextStopError(t *testing.T) {
	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec}
	b := &fakeMember{name: "b", rec: rec, stopErr: errors.New("drain failed")}
	ctx, cancel := context.WithCancel(context.Background())
	logger, _ := newTestLogger()
	done := runAsync(ctx, logger, members(a, b)...)
	eventually.True(t, "b to be ready", 5*time.Second, func() bool { return rec.has("ready b") })
	cancel()
	if err := wait(t, done); err == nil || err.Error() != "b: drain failed" {
		t.Errorf("RunContext = %v, want the shutdown error", err)
	}
}

func TestRunContextCancelledDuringStartup(t *testing.T) {
	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec}
	b := &fakeMember{name: "b", rec: rec, gate: make(chan struct{})} // never ready
	c := &fakeMember{name: "c", rec: rec}
	ctx, cancel := context.WithCancel(context.Background())
	logger, _ := newTestLogger()
	done := runAsync(ctx, logger, members(a, b, c)...)
	eventually.True(t, "b to start", 5*time.Second, func() bool { return rec.has("start b") })
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("RunContext = %v, want nil", err)
	}
	want := []string{"start a", "ready a", "start b", "stop b", "stop a"}
	if diff := cmp.Diff(want, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestRunContextEdgeCases(t *testing.T) {
	logger, _ := newTestLogger()
	if err := lifecycle.RunContext(context.Background(), logger); err != nil {
		t.Errorf("no members: %v", err)
	}
	err := lifecycle.RunContext(context.Background(), logger, lifecycle.Member{Name: "x"})
	if err == nil {
		t.Error("nil runner: want error")
	}
}

func TestRunContextBindFailureSurfaces(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec}
	logger, _ := newTestLogger()
	done := runAsync(context.Background(), logger,
		lifecycle.Member{Name: "a", Runner: a},
		lifecycle.Member{Name: "server", Runner: lifecycle.HTTPServer(logger, taken.Addr().String(), okHandler, nil)},
	)
	err = wait(t, done)
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Fatalf("RunContext = %v, want EADDRINUSE", err)
	}
	if diff := cmp.Diff([]string{"start a", "ready a", "stop a"}, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestSignalContextStopsRunContextOnSIGTERM(t *testing.T) {
	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger, _ := newTestLogger()
	done := make(chan error, 1)
	ctx, stop := lifecycle.SignalContext(context.Background())
	defer stop()
	go func() {
		done <- lifecycle.RunContext(ctx, logger,
			lifecycle.Member{Name: "a", Runner: a},
			lifecycle.Member{Name: "server", Runner: lifecycle.HTTPServerOnListener(logger, l, okHandler, nil)},
		)
	}()
	// SignalContext has registered for signals, so SIGTERM is caught rather
	// than killing the test binary.
	eventually.True(t, "server to serve", 5*time.Second, func() bool {
		resp, err := http.Get("http://" + l.Addr().String())
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("RunContext = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("RunContext did not stop on SIGTERM")
	}
	if diff := cmp.Diff([]string{"start a", "ready a", "stop a"}, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestOnReadyRunsOnceEveryEarlierMemberIsReady(t *testing.T) {
	rec := &recorder{}
	a := &fakeMember{name: "a", rec: rec, gate: make(chan struct{})}
	b := &fakeMember{name: "b", rec: rec}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger, _ := newTestLogger()
	ms := append(members(a, b), lifecycle.Member{Name: "running", Runner: lifecycle.OnReady(func() { rec.add("running") })})
	done := runAsync(ctx, logger, ms...)

	eventually.True(t, "a to start", 5*time.Second, func() bool { return rec.has("start a") })
	time.Sleep(30 * time.Millisecond)
	if rec.has("running") {
		t.Fatal("OnReady ran before a was ready")
	}
	close(a.gate)
	eventually.True(t, "running", 5*time.Second, func() bool { return rec.has("running") })
	cancel()
	if err := wait(t, done); err != nil {
		t.Fatalf("RunContext = %v, want nil: OnReady stops cleanly", err)
	}
	want := []string{"start a", "ready a", "start b", "ready b", "running", "stop b", "stop a"}
	if diff := cmp.Diff(want, rec.get()); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}
