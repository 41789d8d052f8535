// Package maintest lets a command's test binary double as the command: the
// real process (flags, exit codes, signals, stderr) is exercised without a
// separate build.
package maintest

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// Env, set to "1", makes the test binary run the command's main.
const Env = "NETMAN_RUN_MAIN"

// Run is the body of a command's TestMain: with Env set it runs main as
// name with the remaining arguments and exits 0 if main returns; otherwise
// it runs the tests.
func Run(m *testing.M, name string, main func()) int {
	if os.Getenv(Env) == "1" {
		os.Args = append([]string{name}, os.Args[1:]...)
		main()
		return 0
	}
	return m.Run()
}

// Command runs the test binary as the command with args.
func Command(args ...string) *exec.Cmd {
	return Wrap(os.Args[0], args...)
}

// Wrap runs name (a wrapper such as `ip netns exec`, ending with the test
// binary in args) with Env set.
func Wrap(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), Env+"=1")
	return cmd
}

// Fails runs cmd, fails the test unless it exits with status code, and
// returns what it wrote to stderr.
func Fails(t testing.TB, cmd *exec.Cmd, code int) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != code {
		t.Fatalf("exit = %v, want status %d; stderr:\n%s", err, code, stderr.String())
	}
	return stderr.String()
}

// Buffer collects a child process's output; safe to read while the
// process writes.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
