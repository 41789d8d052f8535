// Package netnstest is the privileged test harness: throwaway network
// namespaces with unique names, removed when the test ends, and helpers to
// run code or commands inside them — thin testing.TB wrappers over
// src/namespace, which does the work. Tests that need it call RequireRoot
// first; they skip without root, except under CI (CI=true) or with
// NETMAN_REQUIRE_ROOT_TESTS=1 (set by scripts/test as root), where they fail.
package netnstest

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/netman-release/netman/src/namespace"
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

// UniqueName returns prefix plus a short random suffix (namespace.UniqueName).
func UniqueName(prefix string) string { return namespace.UniqueName(prefix) }

// NS is a named network namespace created by a test: namespace.NS with
// the test's conveniences (Run, Start and Handle fail the test on an error
// and undo what they made when it ends).
type NS struct{ *namespace.NS }

// New creates a named namespace (visible to `ip netns`) with loopback up,
// and deletes it when the test ends.
func New(tb testing.TB, prefix string) *NS {
	tb.Helper()
	name := UniqueName("nm" + prefix)
	ns, err := namespace.Add(name)
	if ns != nil {
		tb.Cleanup(func() {
			if _, err := namespace.Run("ip", "netns", "del", name); err != nil {
				tb.Errorf("deleting netns %s: %v", name, err)
			}
		})
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &NS{ns}
}

// Run runs a command in the test's own namespace and fails the test on error.
func Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := namespace.Run(name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Run runs a command inside the namespace and fails the test on error.
func (ns *NS) Run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	out, err := ns.NS.Run(name, args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// Start runs name in the namespace as a long-lived process (a container's
// init, say), kills it by PID when the test ends, and returns its PID once
// the process is inside the namespace (namespace.NS.AwaitPID): `ip netns
// exec` forks before it joins the namespace, so a PID handed on straight
// after the start may still name a process in the test's own namespace.
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
	if err := ns.AwaitPID(cmd.Process.Pid, 10*time.Second); err != nil {
		tb.Fatalf("%s: %v", name, err)
	}
	return cmd.Process.Pid
}

// Handle opens the namespace for netlink handles (netlink.NewHandleAt),
// closed when the test ends.
func (ns *NS) Handle(tb testing.TB) netns.NsHandle {
	tb.Helper()
	h, err := ns.NS.Handle()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// Veth joins two namespaces with a veth pair (namespace.Veth); a nil
// namespace means the test's own, whose end is deleted when the test ends.
func Veth(tb testing.TB, nsA *NS, a, addrA string, nsB *NS, b, addrB string) {
	tb.Helper()
	for _, end := range []struct {
		ns   *NS
		link string
	}{{nsA, a}, {nsB, b}} {
		if end.ns == nil {
			tb.Cleanup(func() { _ = exec.Command("ip", "link", "del", end.link).Run() })
		}
	}
	if err := namespace.Veth(nsA.inner(), a, addrA, nsB.inner(), b, addrB); err != nil {
		tb.Fatal(err)
	}
}

// inner is the namespace.NS, nil for nil.
func (ns *NS) inner() *namespace.NS {
	if ns == nil {
		return nil
	}
	return ns.NS
}
