// Package maintest lets a command's test binary double as the command: the
// real process (flags, exit codes, signals, stderr) is exercised without a
// separate build.
package maintest

import (
	"os"
	"os/exec"
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
