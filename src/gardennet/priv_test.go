package gardennet

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// mounted reports whether path is a mount point in this mount namespace.
func mounted(t *testing.T, path string) bool {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == path {
			return true
		}
	}
	return false
}

func TestBindMounter(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "gm")
	target := filepath.Join(t.TempDir(), "container-netns", "handle")
	t.Cleanup(func() { _ = BindMounter{}.Unmount(target) })
	m := BindMounter{}

	// Repeated mounts stack nothing.
	for range 3 {
		if err := m.Mount(ns.Path, target); err != nil {
			t.Fatal(err)
		}
	}
	if !same(ns.Path, target) {
		t.Fatal("target is not the namespace")
	}
	if fi, err := os.Stat(filepath.Dir(target)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("bind mount dir %v %v", fi.Mode(), err)
	}
	n := 0
	b, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == target {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d mounts on the target", n)
	}

	// Unmount removes mount and file; a second one has nothing to do.
	for range 2 {
		if err := m.Unmount(target); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Lstat(target); !os.IsNotExist(err) || mounted(t, target) {
		t.Errorf("target left behind: %v", err)
	}

	if err := m.Mount("/proc/-1/ns/net", target); err == nil || err.Error() != "mount failed: no such file or directory" {
		t.Errorf("bad source: %v", err)
	}
	_ = m.Unmount(target)
	if err := m.Mount(ns.Path, "/proc/0/foo/bar"); err == nil || err.Error() != "os.MkdirAll failed: mkdir /proc/0: no such file or directory" {
		t.Errorf("bad target dir: %v", err)
	}
	if err := m.Mount(ns.Path, t.TempDir()); err == nil || !strings.HasPrefix(err.Error(), "os.Create failed:") {
		t.Errorf("target is a directory: %v", err)
	}
}

func TestProxyRedirectInNamespace(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "gp")
	r := &ProxyRedirect{
		IPTables:  iptables.New(iptables.Config{LockFile: filepath.Join(t.TempDir(), "iptables.lock")}),
		CIDR:      "10.255.0.0/16",
		ProxyPort: 9999,
		Ingress:   true,
	}
	if err := r.Apply(context.Background(), ns.Path); err != nil {
		t.Fatal(err)
	}
	got := ns.Run(t, "iptables", "-w", "-t", "nat", "-S")
	for _, want := range []string{"-A OUTPUT -d 10.255.0.0/16 -p tcp -j REDIRECT --to-ports 9999", "-A PREROUTING -p tcp -j REDIRECT --to-ports 9999"} {
		if !strings.Contains(got, want+"\n") {
			t.Errorf("nat table lacks %q:\n%s", want, got)
		}
	}
	// The test's own namespace is untouched.
	if out := netnstest.Run(t, "iptables", "-w", "-t", "nat", "-S"); strings.Contains(out, "--to-ports 9999") {
		t.Errorf("rules leaked into the calling namespace:\n%s", out)
	}
}
