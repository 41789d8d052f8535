package main_test

import (
	"crypto/sha512"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// cnitoolVersion matches the CNI library in go.mod.
const cnitoolVersion = "v1.3.1"

// buildCnitool installs cnitool in its own module context (its cobra and
// OpenTelemetry dependencies stay out of netman's go.mod). It needs the
// module cache or the module proxy.
func buildCnitool(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	cmd := exec.Command(goTool(), "install", "github.com/containernetworking/cni/cnitool@"+cnitoolVersion)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=")
	cmd.Dir = bin
	if out, err := cmd.CombinedOutput(); err != nil {
		testtier.Unavailablef(t, "cnitool %s cannot be built here (no module cache entry and no module proxy?): %v: %s", cnitoolVersion, err, out)
	}
	return filepath.Join(bin, "cnitool")
}

// TestCnitool drives ADD, CHECK, DEL and STATUS through libcni with a
// conflist holding only silk-cni, the way a runtime would, on an IPv4-only
// cell and on a dual-stack one (the result then carries both addresses and
// both default routes, and libcni's CHECK, given the cached result, checks
// the IPv6 side too).
func TestCnitool(t *testing.T) {
	cnitool := buildCnitool(t)
	t.Run("ipv4", func(t *testing.T) { testCnitool(t, cnitool, false) })
	t.Run("dual-stack", func(t *testing.T) { testCnitool(t, cnitool, true) })
}

func testCnitool(t *testing.T, cnitool string, dual bool) {
	var ipv6 []string
	if dual {
		ipv6 = []string{"fd73:696c:6b::/96"}
	}
	e, _ := newEnv(t, "10.255.9.0/24", ipv6...)
	ctr := netnstest.New(t, "c")

	netName := netnstest.UniqueName("silk-cnitool-")
	confDir := t.TempDir()
	conflist := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
		{"type":"silk-cni","daemonPort":%d,"dataDir":%q,"datastore":%q,"mtu":0}]}`,
		netName, e.port, e.dataDir, e.datastore)
	if err := os.WriteFile(filepath.Join(confDir, "10-silk.conflist"), []byte(conflist), 0o644); err != nil {
		t.Fatal(err)
	}
	// libcni caches results under /var/lib/cni; DEL removes them, this is
	// for a test that fails half-way.
	sum := sha512.Sum512([]byte(ctr.Path))
	containerID := fmt.Sprintf("cnitool-%x", sum[:10])
	t.Cleanup(func() {
		files, _ := filepath.Glob(filepath.Join("/var/lib/cni/results", netName+"-*"))
		for _, f := range files {
			_ = os.Remove(f)
		}
	})

	run := func(args ...string) (string, error) {
		cmd := e.host.Command(cnitool, args...)
		cmd.Env = append(os.Environ(), "NETCONFPATH="+confDir, "CNI_PATH="+e.cniPath)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run("add", netName, ctr.Path)
	if err != nil {
		t.Fatalf("cnitool add: %v: %s", err, out)
	}
	if !strings.Contains(out, `"address": "10.255.9.2/32"`) || !strings.Contains(out, `"name": "s-010255009002"`) {
		t.Errorf("add result: %s", out)
	}
	has6 := strings.Contains(out, `"address": "fd73:696c:6b::aff:902/128"`) && strings.Contains(out, `"gateway": "fe80::1"`) &&
		strings.Contains(out, `"dst": "::/0"`)
	if has6 != dual {
		t.Errorf("add result (dual stack %v): %s", dual, out)
	}
	reservation, err := os.ReadFile(filepath.Join(e.dataDir, "ipam", netName, "10.255.9.2"))
	if err != nil || string(reservation) != containerID+"\r\neth0" {
		t.Errorf("reservation %q %v", reservation, err)
	}
	if out, err := run("check", netName, ctr.Path); err != nil {
		t.Errorf("cnitool check: %v: %s", err, out)
	}
	if out, err := run("status", netName, ctr.Path); err != nil {
		t.Errorf("cnitool status: %v: %s", err, out)
	}
	if dual {
		// CHECK notices a missing IPv6 neighbour (the cached result has
		// the IPv6 address).
		ctr.Run(t, "ip", "-6", "neigh", "del", "fe80::1", "dev", "eth0")
		if out, err := run("check", netName, ctr.Path); err == nil || !strings.Contains(out, "fe80::1") {
			t.Errorf("cnitool check without the IPv6 neighbour: %v: %s", err, out)
		}
	}
	// CHECK notices a deleted veth.
	e.host.Run(t, "ip", "link", "del", "s-010255009002")
	if out, err := run("check", netName, ctr.Path); err == nil {
		t.Errorf("cnitool check passed without the veth: %s", out)
	}
	if out, err := run("del", netName, ctr.Path); err != nil {
		t.Fatalf("cnitool del: %v: %s", err, out)
	}
	if out, err := run("del", netName, ctr.Path); err != nil {
		t.Fatalf("second cnitool del: %v: %s", err, out)
	}
	if files, _ := filepath.Glob(filepath.Join(e.dataDir, "ipam", netName, "10.*")); len(files) != 0 {
		t.Errorf("reservations left: %v", files)
	}
	if l := ctr.Run(t, "ip", "-o", "link", "show"); strings.Count(l, "\n") != 1 {
		t.Errorf("container links: %s", l)
	}
}
