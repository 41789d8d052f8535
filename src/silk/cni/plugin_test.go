package cni

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

func TestAddCheckDel(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")

	res := c.add(t, ctr, "ctr-1")
	if len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.255.17.2/32" {
		t.Fatalf("result IPs %+v", res.IPs)
	}
	ip := res.IPs[0].Address.IP.To4()
	n, _ := NamesFor(ip)
	if res.Interfaces[0].Name != "s-010255017002" || res.Interfaces[1].Sandbox != ctr.Path {
		t.Errorf("interfaces %+v %+v", res.Interfaces[0], res.Interfaces[1])
	}

	// Container side.
	err := ctr.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		a := link.Attrs()
		if link.Type() != "veth" || a.HardwareAddr.String() != "ee:ee:0a:ff:11:02" || a.MTU != 1450 ||
			a.Flags&net.FlagUp == 0 || a.RawFlags&uint32(1<<7) == 0 /* IFF_NOARP */ {
			return fmt.Errorf("eth0: type %s mac %s mtu %d flags %v raw %#x", link.Type(), a.HardwareAddr, a.MTU, a.Flags, a.RawFlags)
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "10.255.17.2/32" || addrs[0].Peer.String() != "169.254.0.1/32" ||
			addrs[0].Scope != int(netlink.SCOPE_LINK) {
			return fmt.Errorf("eth0 addrs %+v", addrs)
		}
		routes, _ := netlink.RouteList(link, netlink.FAMILY_V4)
		var def *netlink.Route
		for i, r := range routes {
			if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
				def = &routes[i]
			}
		}
		if def == nil || !def.Gw.Equal(HostIP) || !def.Src.Equal(ip) {
			return fmt.Errorf("container routes %+v", routes)
		}
		neighs, _ := netlink.NeighList(a.Index, netlink.FAMILY_V4)
		if len(neighs) != 1 || !neighs[0].IP.Equal(HostIP) || neighs[0].HardwareAddr.String() != "aa:aa:0a:ff:11:02" ||
			neighs[0].State != netlink.NUD_PERMANENT {
			return fmt.Errorf("container neighbours %+v", neighs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := readSysctl(t, ctr, "net/ipv4/conf/eth0/rp_filter"); got != "1" {
		t.Errorf("container rp_filter %s", got)
	}
	if got := readSysctl(t, ctr, "net/ipv6/conf/eth0/disable_ipv6"); got != "1" {
		t.Errorf("container disable_ipv6 %s", got)
	}

	// Host side.
	err = c.host.Do(func() error {
		link, err := netlink.LinkByName(n.HostDevice)
		if err != nil {
			return err
		}
		a := link.Attrs()
		if a.HardwareAddr.String() != "aa:aa:0a:ff:11:02" || a.MTU != 1450 || a.Flags&net.FlagUp == 0 {
			return fmt.Errorf("host veth: mac %s mtu %d flags %v", a.HardwareAddr, a.MTU, a.Flags)
		}
		addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
		if len(addrs) != 1 || addrs[0].IPNet.String() != "169.254.0.1/32" || addrs[0].Peer.String() != "10.255.17.2/32" {
			return fmt.Errorf("host addrs %+v", addrs)
		}
		routes, _ := netlink.RouteGet(ip)
		if len(routes) != 1 || routes[0].LinkIndex != a.Index {
			return fmt.Errorf("host route to %s: %+v", ip, routes)
		}
		neighs, _ := netlink.NeighList(a.Index, netlink.FAMILY_V4)
		if len(neighs) != 1 || !neighs[0].IP.Equal(ip) || neighs[0].HardwareAddr.String() != "ee:ee:0a:ff:11:02" ||
			neighs[0].State != netlink.NUD_PERMANENT {
			return fmt.Errorf("host neighbours %+v", neighs)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"net/ipv4/ip_forward":                             "1",
		"net/ipv4/conf/" + n.HostDevice + "/rp_filter":    "1",
		"net/ipv6/conf/" + n.HostDevice + "/disable_ipv6": "1",
	} {
		if got := readSysctl(t, c.host, key); got != want {
			t.Errorf("host %s = %s", key, got)
		}
	}
	if files := c.ipamFiles(t); !slices.Equal(files, []string{"10.255.17.2"}) {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != 1 || st[filepath.Base(ctr.Path)].IP != "10.255.17.2" {
		t.Errorf("store %+v", st)
	}

	// CHECK with and without prevResult.
	if err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1")); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := c.plugin.Check(context.Background(), c.checkArgs(t, ctr, "ctr-1", "10.255.17.2")); err != nil {
		t.Errorf("CHECK with prevResult: %v", err)
	}
	if err := c.plugin.Check(context.Background(), c.checkArgs(t, ctr, "ctr-1", "10.255.17.9")); err == nil {
		t.Error("CHECK with a wrong prevResult passed")
	}

	// DEL removes everything; a second DEL succeeds.
	c.del(t, ctr, "ctr-1")
	if l := links(t, ctr); len(l) != 0 {
		t.Errorf("container links left: %v", l)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links left: %v", l)
	}
	_ = c.host.Do(func() error {
		if routes, err := netlink.RouteGet(ip); err == nil && len(routes) > 0 && routes[0].LinkIndex != 0 {
			t.Errorf("host still routes %s: %+v", ip, routes)
		}
		return nil
	})
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files left: %v", files)
	}
	if st := c.store(t); len(st) != 0 {
		t.Errorf("store left: %+v", st)
	}
	c.del(t, ctr, "ctr-1")
	if err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1")); err == nil {
		t.Error("CHECK passed after DEL")
	}
}

// checkArgs are CHECK's arguments with ADD's result for ip (and, on a
// dual-stack cell, ip6) as prevResult.
func (c *cell) checkArgs(t *testing.T, ctr *netnstest.NS, id, ip string, ip6 ...string) *skel.CmdArgs {
	t.Helper()
	n, _ := NamesFor(net.ParseIP(ip))
	var v6 net.IP
	if len(ip6) > 0 {
		v6 = net.ParseIP(ip6[0])
	}
	res := Result(n, "eth0", ctr.Path, v6)
	prev, err := res.GetAsVersion("1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := prev.PrintTo(&b); err != nil {
		t.Fatal(err)
	}
	conf := strings.TrimSuffix(string(c.conf("1.0.0")), "}") + `,"prevResult":` + b.String() + "}"
	a := c.args(ctr, id)
	a.StdinData = []byte(conf)
	return a
}

func TestTwoContainersTalk(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	a, b := netnstest.New(t, "a"), netnstest.New(t, "b")
	ipA := c.add(t, a, "ctr-a").IPs[0].Address.IP
	ipB := c.add(t, b, "ctr-b").IPs[0].Address.IP
	if ipA.Equal(ipB) {
		t.Fatalf("same IP %s", ipA)
	}

	if got := hello(t, a, b, "tcp4", ipB); got != ipA.String() {
		t.Errorf("B saw the connection from %s, want %s", got, ipA)
	}
	c.del(t, a, "ctr-a")
	c.del(t, b, "ctr-b")
}

// hello connects over network from a to a listener on ip in b, sends
// "hello" and returns the source address b saw.
func hello(t *testing.T, a, b *netnstest.NS, network string, ip net.IP) string {
	t.Helper()
	var ln net.Listener
	if err := b.Do(func() (err error) {
		ln, err = net.Listen(network, net.JoinHostPort(ip.String(), "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		buf, _ := io.ReadAll(conn)
		if string(buf) != "hello" {
			got <- "received " + string(buf)
			return
		}
		got <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
	}()
	if err := a.Do(func() error {
		conn, err := net.DialTimeout(network, ln.Addr().String(), 5*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_, err = conn.Write([]byte("hello"))
		return err
	}); err != nil {
		t.Fatalf("dial from A to B over %s: %v", network, err)
	}
	return <-got
}

func TestDelUnknownContainer(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	// A namespace silk never touched, and one that no longer exists.
	c.del(t, ctr, "never-added")
	gone := &netnstest.NS{NS: &namespace.NS{Name: "gone", Path: "/run/netns/nm-does-not-exist"}}
	c.del(t, gone, "never-added")
	// No namespace at all (allowed for DEL).
	if err := c.plugin.Del(context.Background(), &skel.CmdArgs{ContainerID: "x", IfName: "eth0", StdinData: c.conf("1.0.0")}); err != nil {
		t.Fatal(err)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
	// Another plugin's eth0: DEL must not remove what silk did not create.
	other := netnstest.New(t, "o")
	other.Run(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "peer0")
	c.del(t, other, "never-added")
	if l := sorted(links(t, other)); !slices.Equal(l, []string{"eth0", "peer0"}) {
		t.Errorf("links after DEL: %v", l)
	}
}

// TestDelNamespaceGone: the runtime deleted the namespace before DEL. The
// pair died with it; the reservation and store entry must still go.
func TestDelNamespaceGone(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	c.add(t, ctr, "ctr-1")
	args := c.args(ctr, "ctr-1")
	netnstest.Run(t, "ip", "netns", "del", ctr.Name)
	t.Cleanup(func() { netnstest.Run(t, "ip", "netns", "add", ctr.Name) }) // for New's own cleanup
	if err := c.plugin.Del(context.Background(), args); err != nil {
		t.Fatal(err)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != 0 {
		t.Errorf("store %+v", st)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
}

func TestAddSubnetExhausted(t *testing.T) {
	c := newCell(t, "10.255.17.0/30") // one usable address: .2
	first, second := netnstest.New(t, "a"), netnstest.New(t, "b")
	c.add(t, first, "ctr-a")

	_, err := c.plugin.Add(context.Background(), c.args(second, "ctr-b"))
	e := cniError(t, err)
	if e.Code != 100 || e.Msg != "run ipam plugin" ||
		e.Details != "failed to allocate for range 0: no IP addresses available in range set: 10.255.17.1-10.255.17.2" {
		t.Errorf("error %+v", e)
	}
	if l := links(t, second); len(l) != 0 {
		t.Errorf("links left in the second container: %v", l)
	}
	if l := links(t, c.host); !slices.Equal(l, []string{"s-010255017002"}) {
		t.Errorf("host links %v", l)
	}
	if files := c.ipamFiles(t); !slices.Equal(files, []string{"10.255.17.2"}) {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != 1 {
		t.Errorf("store %+v", st)
	}
	// STATUS says the same.
	status := c.plugin.Status(context.Background(), &skel.CmdArgs{StdinData: c.conf("1.1.0")})
	if e := cniError(t, status); e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Details, "no IP addresses available") {
		t.Errorf("STATUS %+v", e)
	}
	c.del(t, first, "ctr-a")
	if err := c.plugin.Status(context.Background(), &skel.CmdArgs{StdinData: c.conf("1.1.0")}); err != nil {
		t.Errorf("STATUS after DEL: %v", err)
	}
}

func TestAddDaemonDown(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	c.daemon.Close()

	_, err := c.plugin.Add(context.Background(), c.args(ctr, "ctr-1"))
	e := cniError(t, err)
	if e.Code != 100 || e.Msg != "discover network info" || !strings.Contains(e.Details, "connection refused") ||
		!strings.Contains(e.Details, "silk-daemon not reachable") {
		t.Errorf("error %+v", e)
	}
	c.assertNothing(t, ctr)

	status := c.plugin.Status(context.Background(), &skel.CmdArgs{StdinData: c.conf("1.1.0")})
	if e := cniError(t, status); e.Code != types.ErrPluginNotAvailable || e.Msg != "discover network info" {
		t.Errorf("STATUS %+v", e)
	}
}

func TestAddDaemonUnhealthy(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	c.up.Store(false)
	_, err := c.plugin.Add(context.Background(), c.args(ctr, "ctr-1"))
	if e := cniError(t, err); e.Msg != "discover network info" || !strings.Contains(e.Details, "answered 503") {
		t.Errorf("error %+v", e)
	}
	c.assertNothing(t, ctr)
}

// TestAddRollsBack: a failure after the veth exists (the container already
// has an eth0, so the rename fails) removes the veth and the reservation.
func TestAddRollsBack(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	ctr.Run(t, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0")

	_, err := c.plugin.Add(context.Background(), c.args(ctr, "ctr-1"))
	if e := cniError(t, err); e.Code != 100 || e.Msg != "set up container" || !strings.Contains(e.Details, "renaming link in container") {
		t.Errorf("error %+v", e)
	}
	if l := links(t, ctr); !slices.Equal(sorted(l), []string{"eth0", "other0"}) {
		t.Errorf("container links %v", l)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != 0 {
		t.Errorf("store %+v", st)
	}
}

// TestAddStoreFailureRollsBack: the last step fails (the datastore path is
// a directory); the veth and the reservation go.
func TestAddStoreFailureRollsBack(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	c.datastore = t.TempDir()
	_, err := c.plugin.Add(context.Background(), c.args(ctr, "ctr-1"))
	if e := cniError(t, err); e.Code != 100 || e.Msg != "write container metadata" {
		t.Errorf("error %+v", e)
	}
	if l := links(t, ctr); len(l) != 0 {
		t.Errorf("container links %v", l)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
}

func sorted(s []string) []string { slices.Sort(s); return s }

func (c *cell) assertNothing(t *testing.T, ctr *netnstest.NS) {
	t.Helper()
	if l := links(t, ctr); len(l) != 0 {
		t.Errorf("container links %v", l)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
	if _, err := os.Stat(c.datastore); err == nil {
		if st := c.store(t); len(st) != 0 {
			t.Errorf("store %+v", st)
		}
	}
}

func TestAddBadInput(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	tests := []struct {
		name   string
		mutate func(*skel.CmdArgs)
		code   uint
		msg    string
	}{
		{"malformed stdin", func(a *skel.CmdArgs) { a.StdinData = []byte("{") }, types.ErrDecodingFailure, "invalid network config"},
		{"unknown version", func(a *skel.CmdArgs) { a.StdinData = c.conf("7.0.0") }, types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"no datastore", func(a *skel.CmdArgs) {
			a.StdinData = []byte(strings.Replace(string(a.StdinData), `"datastore"`, `"x"`, 1))
		}, types.ErrInvalidNetworkConfig, "invalid network config"},
		{"negative mtu", func(a *skel.CmdArgs) {
			a.StdinData = []byte(strings.Replace(string(a.StdinData), `"mtu":0`, `"mtu":-1`, 1))
		}, types.ErrInvalidNetworkConfig, "invalid network config"},
		{"ifname too long", func(a *skel.CmdArgs) { a.IfName = "eth0123456789012" }, 100, "create config"},
		{"no netns", func(a *skel.CmdArgs) { a.Netns = "" }, types.ErrInvalidEnvironmentVariables, "required env variables [CNI_NETNS] missing"},
		{"bad netns", func(a *skel.CmdArgs) { a.Netns = "/run/netns/nm-not-there" }, 100, "create config"},
		{"no container id", func(a *skel.CmdArgs) { a.ContainerID = "" }, types.ErrUnknownContainer, "missing containerID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := c.args(ctr, "ctr-1")
			tt.mutate(a)
			_, err := c.plugin.Add(context.Background(), a)
			if e := cniError(t, err); e.Code != tt.code || e.Msg != tt.msg {
				t.Errorf("got %+v, want code %d msg %q", e, tt.code, tt.msg)
			}
			c.assertNothing(t, ctr)
		})
	}
}

func TestCheckDetectsDamage(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	c.add(t, ctr, "ctr-1")
	if err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1")); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	// Someone removes the container's default route.
	ctr.Run(t, "ip", "route", "del", "default")
	if err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1")); err == nil || !strings.Contains(err.Error(), "no default route") {
		t.Errorf("CHECK without default route: %v", err)
	}
	ctr.Run(t, "ip", "route", "add", "default", "via", "169.254.0.1", "src", "10.255.17.2")
	if err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1")); err != nil {
		t.Fatalf("CHECK after repair: %v", err)
	}
	// Someone deletes the host veth (the pair goes with it).
	c.host.Run(t, "ip", "link", "del", "s-010255017002")
	err := c.plugin.Check(context.Background(), c.args(ctr, "ctr-1"))
	if e := cniError(t, err); e.Msg != "check failed" || !strings.Contains(e.Details, "eth0") {
		t.Errorf("CHECK after veth deletion: %+v", e)
	}
	c.del(t, ctr, "ctr-1")
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
}

func TestCheckOldVersion(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	a := c.args(ctr, "x")
	a.StdinData = c.conf("0.3.1")
	if e := cniError(t, c.plugin.Check(context.Background(), a)); e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("CHECK on 0.3.1: %+v", e)
	}
}

func TestGC(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	keep, drop := netnstest.New(t, "k"), netnstest.New(t, "d")
	c.add(t, keep, "ctr-keep")
	c.add(t, drop, "ctr-drop")
	// A store entry nobody reserves any more (e.g. written before a crash).
	if err := (Store{Path: c.datastore}).Add("orphan", net.ParseIP("10.255.17.200")); err != nil {
		t.Fatal(err)
	}

	gcConf := strings.TrimSuffix(string(c.conf("1.1.0")), "}") +
		`,"cni.dev/valid-attachments":[{"containerID":"ctr-keep","ifname":"eth0"},{"containerID":"ctr-drop","ifname":"eth1"}]}`
	if err := c.plugin.GC(context.Background(), &skel.CmdArgs{StdinData: []byte(gcConf)}); err != nil {
		t.Fatal(err)
	}
	if files := c.ipamFiles(t); !slices.Equal(files, []string{"10.255.17.2"}) {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != 1 || st[filepath.Base(keep.Path)].IP != "10.255.17.2" {
		t.Errorf("store %+v", st)
	}
	if l := links(t, c.host); !slices.Equal(l, []string{"s-010255017002"}) {
		t.Errorf("host links %v", l)
	}
	if err := c.plugin.Check(context.Background(), c.args(keep, "ctr-keep")); err != nil {
		t.Errorf("CHECK of the kept container: %v", err)
	}
	// Old config versions cannot GC.
	if e := cniError(t, c.plugin.GC(context.Background(), &skel.CmdArgs{StdinData: c.conf("1.0.0")})); e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("GC on 1.0.0: %+v", e)
	}
	// GC with no valid attachments empties the network.
	if err := c.plugin.GC(context.Background(), &skel.CmdArgs{StdinData: c.conf("1.1.0")}); err != nil {
		t.Fatal(err)
	}
	if files := c.ipamFiles(t); len(files) != 0 {
		t.Errorf("ipam files %v", files)
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
}

// TestConcurrentAdds: parallel ADDs into one cell get distinct addresses
// (host-local's lock) and all land in the store (its flock).
func TestConcurrentAdds(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	const n = 8
	ctrs := make([]*netnstest.NS, n)
	for i := range ctrs {
		ctrs[i] = netnstest.New(t, "p")
	}
	errs := make(chan error, n)
	for i, ctr := range ctrs {
		go func() {
			_, err := c.plugin.Add(context.Background(), c.args(ctr, fmt.Sprintf("ctr-%d", i)))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if files := c.ipamFiles(t); len(files) != n {
		t.Errorf("ipam files %v", files)
	}
	if st := c.store(t); len(st) != n {
		t.Errorf("store has %d entries", len(st))
	}
	for i, ctr := range ctrs {
		c.del(t, ctr, fmt.Sprintf("ctr-%d", i))
	}
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links %v", l)
	}
}
