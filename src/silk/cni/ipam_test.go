package cni

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestIPAM(t *testing.T) {
	conf := &NetConf{DataDir: t.TempDir()}
	conf.Name = "silk"
	pool := newIPAM(conf)

	alloc := func(subnet, id string) (net.IP, error) {
		rs, err := rangeSet(subnet)
		if err != nil {
			t.Fatal(err)
		}
		return pool.allocate(rs, id, "eth0")
	}

	// /29: .1 is the gateway, .7 broadcast → .2 ... .6.
	var got []string
	for _, id := range []string{"a", "b", "c", "d", "e"} {
		ip, err := alloc("10.255.17.0/29", id)
		if err != nil {
			t.Fatalf("allocating %s: %v", id, err)
		}
		got = append(got, ip.String())
	}
	if strings.Join(got, " ") != "10.255.17.2 10.255.17.3 10.255.17.4 10.255.17.5 10.255.17.6" {
		t.Errorf("allocated %v", got)
	}
	data, err := os.ReadFile(filepath.Join(conf.DataDir, "ipam", "silk", "10.255.17.2"))
	if err != nil || string(data) != "a\r\neth0" {
		t.Errorf("reservation file %q %v", data, err)
	}
	last, _ := os.ReadFile(filepath.Join(conf.DataDir, "ipam", "silk", "last_reserved_ip.0"))
	if string(last) != "10.255.17.6" {
		t.Errorf("last_reserved_ip.0 = %q", last)
	}
	if _, err := alloc("10.255.17.0/29", "f"); err == nil ||
		err.Error() != "failed to allocate for range 0: no IP addresses available in range set: 10.255.17.1-10.255.17.6" {
		t.Errorf("exhausted: %v", err)
	}
	if _, err := alloc("10.255.17.0/29", "a"); err == nil || !strings.Contains(err.Error(), "duplicate allocation is not allowed") {
		t.Errorf("duplicate: %v", err)
	}
	if free, err := pool.usage("10.255.17.0/29"); err != nil || free != 0 {
		t.Errorf("usage = %d, %v", free, err)
	}

	if ips := pool.lookup("c", "eth0"); len(ips) != 1 || ips[0].String() != "10.255.17.4" {
		t.Errorf("lookup = %v", ips)
	}
	if ips := pool.lookup("c", "eth1"); len(ips) != 0 {
		t.Errorf("lookup other ifname = %v", ips)
	}
	if err := pool.release("c", "eth0"); err != nil {
		t.Fatal(err)
	}
	if err := pool.release("c", "eth0"); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if free, _ := pool.usage("10.255.17.0/29"); free != 1 {
		t.Errorf("free after release = %d", free)
	}
	// Round robin continues after the last reservation, wrapping to the hole.
	if ip, err := alloc("10.255.17.0/29", "g"); err != nil || ip.String() != "10.255.17.4" {
		t.Errorf("after release got %v %v", ip, err)
	}

	all, err := pool.list()
	if err != nil || len(all) != 5 {
		t.Fatalf("list = %v, %v", all, err)
	}
	for _, a := range all {
		if a.IfName != "eth0" || a.ContainerID == "" {
			t.Errorf("allocation %+v", a)
		}
	}

	// Too small and malformed subnets fail as host-local does.
	if _, err := alloc("10.255.17.0/32", "h"); err == nil || !strings.Contains(err.Error(), "too small to allocate from") {
		t.Errorf("/32: %v", err)
	}
	if _, err := rangeSet("nope"); err == nil {
		t.Error("bad subnet accepted")
	}

	// Releasing in a network that never existed creates nothing.
	other := &NetConf{DataDir: conf.DataDir}
	other.Name = "other"
	if err := newIPAM(other).release("x", "eth0"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(conf.DataDir, "ipam", "other")); !os.IsNotExist(err) {
		t.Errorf("release created the directory: %v", err)
	}
}

// Files written by old host-local versions hold only the container ID.
func TestIPAMLegacyFile(t *testing.T) {
	conf := &NetConf{DataDir: t.TempDir()}
	conf.Name = "silk"
	pool := newIPAM(conf)
	dir := pool.dir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "10.255.17.9"), []byte("old-id"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ips := pool.lookup("old-id", "eth0"); len(ips) != 1 {
		t.Errorf("lookup = %v", ips)
	}
	if err := pool.release("old-id", "eth0"); err != nil {
		t.Fatal(err)
	}
	if ips := pool.lookup("old-id", "eth0"); len(ips) != 0 {
		t.Errorf("still there: %v", ips)
	}
}
