package namespace_test

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestAddAwaitDelete: a namespace made by Add is listed with loopback up;
// a process started in it is known to be inside (AwaitPID) while this one
// is not; Delete removes it, and deleting it again is fine.
func TestAddAwaitDelete(t *testing.T) {
	netnstest.RequireRoot(t)
	name := namespace.UniqueName("nmt")
	ns, err := namespace.Add(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = namespace.Delete(name) })
	if !namespace.Exists(name) || ns.Path != "/run/netns/"+name {
		t.Fatalf("%+v: not there", ns)
	}
	if out, err := ns.Run("ip", "-o", "link", "show", "lo"); err != nil || !strings.Contains(out, "UP") {
		t.Errorf("lo in %s: %v %q, want it up", name, err, out)
	}
	cmd := ns.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if err := ns.AwaitPID(cmd.Process.Pid, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := ns.Holds(os.Getpid()); err == nil {
		t.Error("the test's own process is in the new namespace")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := namespace.Delete(name); err != nil || namespace.Exists(name) {
		t.Fatalf("delete: %v (exists: %v)", err, namespace.Exists(name))
	}
	if err := namespace.Delete(name); err != nil {
		t.Errorf("second delete: %v", err)
	}
}
