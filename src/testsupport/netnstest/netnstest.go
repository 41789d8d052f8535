// Package netnstest is the privileged test harness: throwaway network
// namespaces with unique names, removed when the test ends, and helpers to
// run code or commands inside them. Tests that need it call RequireRoot
// first; they skip without root, except under CI (CI=true) or with
// NETMAN_REQUIRE_ROOT_TESTS=1 (set by scripts/test as root), where they fail.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/netman-release/netman/src/testsupport/testtier"
)

// EnvRequireRoot makes privileged tests fail instead of skip without root.
const EnvRequireRoot = "NETMAN_REQUIRE_ROOT_TESTS"

// RequireRoot skips (or fails, under CI or NETMAN_REQUIRE_ROOT_TESTS=1) a test
// that needs root, and checks the ip tool is there.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		testtier.Unavailable(tb, "privileged test: needs root (scripts/test runs it as root)", EnvRequireRoot)
		return
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Fatalf("privileged test needs iproute2's ip: %v", err)
	}
}

// UniqueName returns prefix plus a short random suffix; kernel names are
// capped at 15 bytes, so keep prefixes short.
func UniqueName(prefix string) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return prefix + hex.EncodeToString(b)
}

// NS is a named network namespace created by a test.
type NS struct {
	Name string
	Path string // /run/netns/<Name>
}

// New creates a named namespace (visible to `ip netns`) with loopback up,
// and deletes it when the test ends.
func New(tb testing.TB, prefix string) *NS {
	tb.Helper()
	name := UniqueName("nm" + prefix)
	Run(tb, "ip", "netns", "add", name)
	tb.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			tb.Errorf("deleting netns %s: %v: %s", name, err, out)
		}
	})
	ns := &NS{Name: name, Path: "/run/netns/" + name}
	ns.Run(tb, "ip", "link", "set", "lo", "up")
	return ns
}

// Run runs a command in the test's own namespace and fails the test on error.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Run runs a command inside the namespace and fails the test on error.
func (ns *NS) Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	return Run(tb, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command returns an unstarted command that runs inside the namespace.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Start runs name in the namespace as a long-lived process (a container's
// init, say), kills it by PID when the test ends, and returns its PID once
// the process is inside the namespace. `ip netns exec` forks before it
// joins the namespace, so a PID handed on straight after Start may still
// name a process in the test's own namespace.
func (ns *NS) Start(tb testing.TB, name string, args ...string) int {
	tb.Helper()
	cmd := ns.Command(name, args...)
	if err := cmd.Start(); err != nil {
		tb.Fatalf("starting %s in %s: %v", name, ns.Name, err)
	}
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	want, err := os.Stat(ns.Path)
	if err != nil {
		tb.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && os.SameFile(got, want) {
			return pid
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s (pid %d) did not enter namespace %s within 10 s (last: %v)", name, pid, ns.Name, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Do runs fn on a locked OS thread switched into the namespace, then
// switches back. Goroutines fn starts do not inherit the namespace.
func (ns *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("getting current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", ns.Path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("entering netns %s: %w", ns.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace; never reuse it.
			panic(fmt.Sprintf("restoring netns: %v", err))
		}
	}()
	return fn()
}

// Handle opens the namespace for netlink handles (netlink.NewHandleAt).
func (ns *NS) Handle(tb testing.TB) netns.NsHandle {
	tb.Helper()
	h, err := netns.GetFromPath(ns.Path)
	if err != nil {
		tb.Fatalf("opening netns %s: %v", ns.Path, err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// Veth joins two namespaces with a veth pair named a (in nsA) and b (in
// nsB), addresses them (CIDR form, may be empty) and brings both up. A nil
// namespace means the test's own. Deleting either namespace removes the pair.
func Veth(tb testing.TB, nsA *NS, a, addrA string, nsB *NS, b, addrB string) {
	tb.Helper()
	Run(tb, "ip", "link", "add", a, "type", "veth", "peer", "name", b)
	place := func(ns *NS, link, addr string) {
		if ns != nil {
			Run(tb, "ip", "link", "set", link, "netns", ns.Name)
		} else {
			tb.Cleanup(func() { _ = exec.Command("ip", "link", "del", link).Run() })
		}
		run := func(args ...string) {
			if ns != nil {
				ns.Run(tb, "ip", args...)
			} else {
				Run(tb, "ip", args...)
			}
		}
		if addr != "" {
			run("addr", "add", addr, "dev", link)
		}
		run("link", "set", link, "up")
	}
	place(nsA, a, addrA)
	place(nsB, b, addrB)
}
