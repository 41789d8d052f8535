package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

const v6Overlay = "fd73:696c:6b::/96"

func newDualCell(t testing.TB, subnet string) *cell {
	c := newCell(t, subnet)
	c.ipv6 = v6Overlay
	return c
}

// TestResultDualStack: a dual-stack result has two ips entries (the /32
// via 169.254.0.1 and the derived /128 via fe80::1) and both default
// routes, in every CNI version (0.3.x/0.4.0 mark them version 4 and 6).
func TestResultDualStack(t *testing.T) {
	n, _ := NamesFor(net.ParseIP("10.255.30.5"))
	res := Result(n, "eth0", "/var/run/netns/abc", net.ParseIP("fd73:696c:6b::aff:1e05"))
	type ip struct{ Version, Address, Gateway string }
	wantIPs := []ip{{"4", "10.255.30.5/32", "169.254.0.1"}, {"6", "fd73:696c:6b::aff:1e05/128", "fe80::1"}}
	wantRoutes := []string{"0.0.0.0/0 via 169.254.0.1", "::/0 via fe80::1"}
	for _, v := range SupportedVersions {
		t.Run(v, func(t *testing.T) {
			conv, err := res.GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := conv.PrintTo(&buf); err != nil {
				t.Fatal(err)
			}
			parsed, err := version.NewResult(v, buf.Bytes())
			if err != nil {
				t.Fatal(err)
			}
			var ips []ip
			var routes []*types.Route
			switch v {
			case "0.3.0", "0.3.1", "0.4.0":
				r, err := types040.GetResult(parsed)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range r.IPs {
					ips = append(ips, ip{c.Version, c.Address.String(), c.Gateway.String()})
				}
				routes = r.Routes
			default:
				r, err := current.GetResult(parsed)
				if err != nil {
					t.Fatal(err)
				}
				for _, c := range r.IPs {
					vv := "4"
					if c.Address.IP.To4() == nil {
						vv = "6"
					}
					if *c.Interface != 1 {
						t.Errorf("ip %s on interface %d", c.Address.String(), *c.Interface)
					}
					ips = append(ips, ip{vv, c.Address.String(), c.Gateway.String()})
				}
				routes = r.Routes
			}
			var rs []string
			for _, r := range routes {
				rs = append(rs, r.Dst.String()+" via "+r.GW.String())
			}
			if diff := cmp.Diff(wantIPs, ips); diff != "" {
				t.Errorf("ips (-want +got):\n%s\n%s", diff, buf.String())
			}
			if diff := cmp.Diff(wantRoutes, rs); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAddCheckDelDualStack: on a dual-stack cell (the daemon reports
// ipv6_overlay_network) ADD gives the container its derived /128, a
// default route via fe80::1 and permanent neighbours both ways; CHECK
// verifies them; DEL removes them with the veth.
func TestAddCheckDelDualStack(t *testing.T) {
	c := newDualCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	res := c.add(t, ctr, "ctr-1")
	var got []string
	for _, ipc := range res.IPs {
		got = append(got, ipc.Address.String()+" gw "+ipc.Gateway.String())
	}
	if diff := cmp.Diff([]string{"10.255.17.2/32 gw 169.254.0.1", "fd73:696c:6b::aff:1102/128 gw fe80::1"}, got); diff != "" {
		t.Fatalf("result ips (-want +got):\n%s", diff)
	}
	ip6 := net.ParseIP("fd73:696c:6b::aff:1102")
	n, _ := NamesFor(net.ParseIP("10.255.17.2"))

	err := ctr.Do(func() error {
		link, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := checkEnd6(link, slash128(ip6), HostIP6, n.HostMAC); err != nil {
			return err
		}
		if !hasRoute6(link, nil, HostIP6) {
			return fmt.Errorf("no IPv6 default route via fe80::1")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("container: %v", err)
	}
	err = c.host.Do(func() error {
		link, err := netlink.LinkByName(n.HostDevice)
		if err != nil {
			return err
		}
		if err := checkEnd6(link, &net.IPNet{IP: HostIP6, Mask: net.CIDRMask(64, 128)}, ip6, n.ContainerMAC); err != nil {
			return err
		}
		routes, err := netlink.RouteGet(ip6)
		if err != nil || len(routes) != 1 || routes[0].LinkIndex != link.Attrs().Index {
			return fmt.Errorf("host route to %s: %+v %v", ip6, routes, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("host: %v", err)
	}
	for _, s := range []struct {
		ns        *netnstest.NS
		key, want string
	}{
		{ctr, "net/ipv6/conf/eth0/disable_ipv6", "0"},
		{ctr, "net/ipv6/conf/eth0/accept_dad", "0"},
		{c.host, "net/ipv6/conf/" + n.HostDevice + "/disable_ipv6", "0"},
		{c.host, "net/ipv6/conf/" + n.HostDevice + "/accept_dad", "0"},
		{c.host, "net/ipv6/conf/all/forwarding", "1"},
		{c.host, "net/ipv4/ip_forward", "1"},
	} {
		if got := readSysctl(t, s.ns, s.key); got != s.want {
			t.Errorf("%s = %s, want %s", s.key, got, s.want)
		}
	}

	// CHECK with the dual-stack prevResult; a wrong IPv6 address, or an
	// IPv6 neighbour gone, fails it.
	check := func(ip6 string) error {
		return c.plugin.Check(context.Background(), c.checkArgs(t, ctr, "ctr-1", "10.255.17.2", ip6))
	}
	if err := check("fd73:696c:6b::aff:1102"); err != nil {
		t.Errorf("CHECK: %v", err)
	}
	if err := check("fd73:696c:6b::aff:1109"); err == nil || !strings.Contains(err.Error(), "not derived") {
		t.Errorf("CHECK with a foreign IPv6 address: %v", err)
	}
	ctr.Run(t, "ip", "-6", "neigh", "del", "fe80::1", "dev", "eth0")
	if err := check("fd73:696c:6b::aff:1102"); err == nil || !strings.Contains(err.Error(), "no permanent neighbour fe80::1") {
		t.Errorf("CHECK without the IPv6 neighbour: %v", err)
	}

	c.del(t, ctr, "ctr-1")
	if l := links(t, c.host); len(l) != 0 {
		t.Errorf("host links left: %v", l)
	}
	_ = c.host.Do(func() error {
		if routes, err := netlink.RouteGet(ip6); err == nil && len(routes) > 0 {
			t.Errorf("host still routes %s: %+v", ip6, routes)
		}
		return nil
	})
}

// TestTwoContainersTalkIPv6: two containers on one dual-stack cell reach
// each other over TCP on their IPv6 addresses, through the host.
func TestTwoContainersTalkIPv6(t *testing.T) {
	c := newDualCell(t, "10.255.17.0/24")
	a, b := netnstest.New(t, "a"), netnstest.New(t, "b")
	ipA := c.add(t, a, "ctr-a").IPs[1].Address.IP
	ipB := c.add(t, b, "ctr-b").IPs[1].Address.IP
	if got := hello(t, a, b, "tcp6", ipB); got != ipA.String() {
		t.Errorf("B saw the connection from %s, want %s", got, ipA)
	}
}

// TestIPv4OnlyCellKeepsIPv6Off: without ipv6_overlay_network from the
// daemon, the result and the veths are exactly IPv4-only.
func TestIPv4OnlyCellKeepsIPv6Off(t *testing.T) {
	c := newCell(t, "10.255.17.0/24")
	ctr := netnstest.New(t, "c")
	res := c.add(t, ctr, "ctr-1")
	raw, _ := json.Marshal(res)
	if len(res.IPs) != 1 || len(res.Routes) != 1 || strings.Contains(string(raw), "fe80") {
		t.Errorf("IPv4-only result %s", raw)
	}
	if got := readSysctl(t, ctr, "net/ipv6/conf/eth0/disable_ipv6"); got != "1" {
		t.Errorf("container disable_ipv6 %s", got)
	}
}
