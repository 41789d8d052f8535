package maintest

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// Process is a command started by a test: its stdout collected in Out,
// killed by PID if still running when the test ends.
type Process struct {
	Cmd  *exec.Cmd
	Out  *Buffer
	done chan struct{}
	err  error
}

// Start starts cmd with its stdout in a Buffer and ends it with the test.
func Start(t testing.TB, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Out: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout = p.Out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// Until polls ok every 20 ms until it holds, failing the test with what
// and the output when it does not within timeout or the process exits.
func (p *Process) Until(t testing.TB, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !ok(); time.Sleep(20 * time.Millisecond) {
		select {
		case <-p.done:
			t.Fatalf("exited (%v) before %s; output:\n%s", p.err, what, p.Out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("not %s within %s; output:\n%s", what, timeout, p.Out.String())
		}
	}
}

// Terminate sends SIGTERM and requires a clean exit (status 0) within
// timeout.
func (p *Process) Terminate(t testing.TB, timeout time.Duration) {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Fatalf("exit after SIGTERM = %v; output:\n%s", p.err, p.Out.String())
		}
	case <-time.After(timeout):
		t.Fatalf("did not exit within %s of SIGTERM; output:\n%s", timeout, p.Out.String())
	}
}
