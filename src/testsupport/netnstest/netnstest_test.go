package netnstest

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestNamespacesAndVeth(t *testing.T) {
	RequireRoot(t)
	a, b := New(t, "a"), New(t, "b")
	Veth(t, a, "va", "10.99.0.1/24", b, "vb", "10.99.0.2/24")
	// A socket keeps the namespace it was created in, so a listener made
	// inside b can accept from any goroutine.
	var l net.Listener
	if err := b.Do(func() (err error) { l, err = net.Listen("tcp", "10.99.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	if err := a.Do(func() error {
		c, err := net.DialTimeout("tcp", l.Addr().String(), 2*time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatalf("dial across the veth: %v", err)
	}
	err := a.Do(func() error {
		_, err := netlink.LinkByName("va")
		return err
	})
	if err != nil {
		t.Fatalf("Do did not enter the namespace: %v", err)
	}
	if _, err := netlink.LinkByName("va"); err == nil {
		t.Fatal("veth leaked into the test's own namespace")
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if !strings.Contains(string(out), a.Name) {
		t.Fatalf("namespace %s not listed", a.Name)
	}
}
