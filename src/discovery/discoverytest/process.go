package discoverytest

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Output is a concurrency-safe buffer for a child process's output.
type Output struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Process is a started daemon command.
type Process struct {
	Cmd            *exec.Cmd
	Stdout, Stderr *Output
	done           chan error
}

// StartProcess starts cmd capturing its output; the process is killed when
// the test ends if it is still running.
func StartProcess(t *testing.T, cmd *exec.Cmd) *Process {
	t.Helper()
	p := &Process{Cmd: cmd, Stdout: &Output{}, Stderr: &Output{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.Stdout, p.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// WaitForOutput waits until stdout contains s.
func (p *Process) WaitForOutput(t *testing.T, s string, timeout time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !strings.Contains(p.Stdout.String(), s); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %s; stdout:\n%s\nstderr:\n%s", s, timeout, p.Stdout, p.Stderr)
		}
	}
}

// Wait waits for the process to exit and returns its exit code.
func (p *Process) Wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode()
	case <-time.After(timeout):
		t.Fatalf("still running after %s; stdout:\n%s\nstderr:\n%s", timeout, p.Stdout, p.Stderr)
		return -1
	}
}

// Stop sends SIGTERM and returns the exit code.
func (p *Process) Stop(t *testing.T, timeout time.Duration) int {
	t.Helper()
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	return p.Wait(t, timeout)
}
