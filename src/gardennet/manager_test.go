package gardennet

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types020 "github.com/containernetworking/cni/pkg/types/020"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"
)

type managerFixture struct {
	m      *Manager
	cni    *fakeCNI
	mnt    *fakeMounter
	ports  *fakePorts
	proxy  *fakeProxy
	stderr *bytes.Buffer
}

func cniResult(ips ...string) *types100.Result {
	r := &types100.Result{
		CNIVersion: "1.0.0",
		Interfaces: []*types100.Interface{{Name: "eth0", Sandbox: "/netns/h"}},
		DNS:        types.DNS{Nameservers: []string{"169.254.0.53"}},
	}
	for _, s := range ips {
		ip, ipn, err := net.ParseCIDR(s)
		if err != nil {
			panic(err)
		}
		ipn.IP = ip
		r.IPs = append(r.IPs, &types100.IPConfig{Address: *ipn, Interface: types100.Int(0)})
	}
	return r
}

func newManager() *managerFixture {
	f := &managerFixture{
		cni:    &fakeCNI{result: cniResult("10.255.12.5/24")},
		mnt:    &fakeMounter{},
		ports:  &fakePorts{rng: Range{Start: 61000, Size: 3}},
		proxy:  &fakeProxy{},
		stderr: &bytes.Buffer{},
	}
	f.m = &Manager{CNI: f.cni, Mounter: f.mnt, Ports: f.ports, Proxy: f.proxy,
		BindMountRoot: "/netns", SearchDomains: []string{"apps.internal"}, Stderr: f.stderr}
	return f
}

func (f *managerFixture) handle(t *testing.T, action, handle, stdin string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Handle(context.Background(), f.m, action, handle, strings.NewReader(stdin), &out)
	return out.String(), err
}

const gardenUp = `{
  "Pid": 4242,
  "Properties": {"app_id": "app-guid", "policy_group_id": "app-guid", "container_workload": "app"},
  "netout_rules": [{"protocol": 1, "networks": [{"start": "8.8.8.8", "end": "9.9.9.9"}],
                    "ports": [{"start": 53, "end": 54}], "log": true},
                   {"protocol": 3, "networks": [{"start": "10.0.0.1", "end": "10.0.0.1"}], "icmps": {"type": 8, "code": 0}}],
  "netin": [{"host_port": 0, "container_port": 8080}, {"host_port": 1234, "container_port": 2222},
            {"host_port": 0, "container_port": 9090}]
}`

func TestUp(t *testing.T) {
	f := newManager()
	out, err := f.handle(t, "up", "h", gardenUp)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"properties":{"garden.network.container-ip":"10.255.12.5","garden.network.host-ip":"255.255.255.255",` +
		`"garden.network.mapped-ports":"[{\"HostPort\":61000,\"ContainerPort\":8080},{\"HostPort\":1234,\"ContainerPort\":2222},{\"HostPort\":61001,\"ContainerPort\":9090}]",` +
		`"garden.network.interface":"eth0"},"dns_servers":["169.254.0.53"],"search_domains":["apps.internal"]}` + "\n"
	if out != want {
		t.Errorf("stdout\n got %s\nwant %s", out, want)
	}
	if diff := cmp.Diff(map[string]string{"/netns/h": "/proc/4242/ns/net"}, f.mnt.mounts); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{61000, 61001}, f.ports.held("h")); diff != "" {
		t.Errorf("ports (-want +got):\n%s", diff)
	}
	add := f.cni.added["h"]
	if add.NSPath != "/netns/h" {
		t.Errorf("CNI_NETNS %q", add.NSPath)
	}
	if diff := cmp.Diff(map[string]any{"app_id": "app-guid", "policy_group_id": "app-guid", "container_workload": "app"}, add.Metadata); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
	// Allocated ports are written back; garden's types are re-marshalled.
	wantRC := map[string]any{
		"portMappings": []any{
			map[string]any{"host_port": 61000.0, "container_port": 8080.0},
			map[string]any{"host_port": 1234.0, "container_port": 2222.0},
			map[string]any{"host_port": 61001.0, "container_port": 9090.0},
		},
		"netOutRules": []any{
			map[string]any{"protocol": 1.0, "networks": []any{map[string]any{"start": "8.8.8.8", "end": "9.9.9.9"}},
				"ports": []any{map[string]any{"start": 53.0, "end": 54.0}}, "log": true},
			map[string]any{"protocol": 3.0, "networks": []any{map[string]any{"start": "10.0.0.1", "end": "10.0.0.1"}},
				"icmps": map[string]any{"type": 8.0, "code": 0.0}},
		},
	}
	if diff := cmp.Diff(wantRC, add.RuntimeConfig); diff != "" {
		t.Errorf("runtimeConfig (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/netns/h"}, f.proxy.applied); diff != "" {
		t.Errorf("proxy redirect (-want +got):\n%s", diff)
	}

	// A second container gets the next free port; after down the first's
	// ports are reused lowest first.
	if _, err := f.handle(t, "up", "h2", `{"pid": 7, "netin": [{"host_port": 0, "container_port": 8080}]}`); err != nil {
		t.Fatal(err)
	}
	if got := f.ports.held("h2"); !cmp.Equal(got, []uint32{61002}) {
		t.Errorf("second container ports %v", got)
	}
	if _, err := f.handle(t, "down", "h", "null"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.handle(t, "up", "h3", `{"pid": 8, "netin": [{"host_port": 0, "container_port": 1}]}`); err != nil {
		t.Fatal(err)
	}
	if got := f.ports.held("h3"); !cmp.Equal(got, []uint32{61000}) {
		t.Errorf("released port not reused first: %v", got)
	}
}

func TestUpMinimal(t *testing.T) {
	// No netin, no properties, no DNS, no search domains: mapped-ports is
	// "[]", no metadata is injected and the optional keys are omitted.
	f := newManager()
	f.m.SearchDomains = nil
	r := cniResult("10.255.12.5/24")
	r.DNS = types.DNS{}
	f.cni.result = r
	out, err := f.handle(t, "up", "h", `{"pid": 0}`)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"properties":{"garden.network.container-ip":"10.255.12.5","garden.network.host-ip":"255.255.255.255",` +
		`"garden.network.mapped-ports":"[]","garden.network.interface":"eth0"}}` + "\n"
	if out != want {
		t.Errorf("stdout\n got %s\nwant %s", out, want)
	}
	if src := f.mnt.mounts["/netns/h"]; src != "/proc/self/fd/3" {
		t.Errorf("pid 0 mounted %q", src)
	}
	add := f.cni.added["h"]
	if add.Metadata != nil {
		t.Errorf("metadata %v", add.Metadata)
	}
	// As upstream, runtimeConfig always carries both keys.
	if diff := cmp.Diff(map[string]any{"portMappings": nil, "netOutRules": nil}, add.RuntimeConfig); diff != "" {
		t.Errorf("runtimeConfig (-want +got):\n%s", diff)
	}
}

func TestUpResultMapping(t *testing.T) {
	v6 := cniResult("fd00::5/64", "10.255.1.9/24", "10.255.1.10/24")
	old := &types020.Result{CNIVersion: "0.2.0", IP4: &types020.IPConfig{IP: net.IPNet{IP: net.ParseIP("10.255.7.7").To4(), Mask: net.CIDRMask(24, 32)}}}
	badIndex := cniResult("10.255.1.9/24")
	badIndex.IPs[0].Interface = types100.Int(3)
	onlyV6 := cniResult("fd00::5/64")
	for _, tc := range []struct {
		name   string
		result types.Result
		ip     string
		ip6    string
		iface  string
		err    string
	}{
		{name: "first IPv4 wins; the IPv6 address goes to Garden too", result: v6, ip: "10.255.1.9", ip6: "fd00::5", iface: "eth0"},
		{name: "dual-stack silk result", result: cniResult("10.255.1.9/32", "fd73:696c:6b::aff:109/128"), ip: "10.255.1.9", ip6: "fd73:696c:6b::aff:109", iface: "eth0"},
		{name: "pre-0.3 results have no interface", result: old, ip: "10.255.7.7"},
		{name: "interface index out of range", result: badIndex, err: "no corresponding interface found, interface index: 3, number of interfaces: 1"},
		{name: "no IPv4", result: onlyV6, err: "expected an IPv4 address in the CNI result"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newManager()
			f.cni.result = tc.result
			out, err := f.m.Up(context.Background(), "h", UpInputs{Pid: 1})
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.Properties.ContainerIP != tc.ip || out.Properties.ContainerIPv6 != tc.ip6 || out.Properties.Interface != tc.iface {
				t.Errorf("got %+v", out.Properties)
			}
			if b, _ := json.Marshal(out); (tc.ip6 == "") == strings.Contains(string(b), "garden.network.container-ipv6") {
				t.Errorf("output %s: the IPv6 property must be there exactly on a dual-stack result", b)
			}
		})
	}
}

func TestUpErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(*managerFixture)
		in    UpInputs
		err   string
	}{
		{name: "mount", setup: func(f *managerFixture) { f.mnt.mountErr = errBoom }, in: UpInputs{Pid: 9},
			err: "failed mounting /proc/9/ns/net to /netns/h: boom"},
		{name: "ports exhausted", in: UpInputs{Pid: 9, NetIn: []NetIn{{}, {}, {}, {}}},
			err: "allocating port: acquire port: port pool exhausted"},
		{name: "cni", setup: func(f *managerFixture) { f.cni.addErr = errBoom }, in: UpInputs{Pid: 9},
			err: "cni up failed: boom"},
		{name: "no result", setup: func(f *managerFixture) { f.cni.result = nil }, in: UpInputs{Pid: 9},
			err: "cni up failed: no ip allocated"},
		{name: "proxy", setup: func(f *managerFixture) { f.proxy.err = errBoom }, in: UpInputs{Pid: 9},
			err: "proxy redirect apply: boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newManager()
			if tc.setup != nil {
				tc.setup(f)
			}
			_, err := f.m.Up(context.Background(), "h", tc.in)
			if err == nil || err.Error() != tc.err {
				t.Fatalf("got %v, want %s", err, tc.err)
			}
		})
	}
	f := newManager()
	if _, err := f.m.Up(context.Background(), "", UpInputs{}); err == nil || err.Error() != "up missing container handle" {
		t.Errorf("empty handle: %v", err)
	}
	if err := f.m.Down(context.Background(), ""); err == nil || err.Error() != "down missing container handle" {
		t.Errorf("empty handle: %v", err)
	}
}

func TestDown(t *testing.T) {
	f := newManager()
	if _, err := f.handle(t, "up", "h", gardenUp); err != nil {
		t.Fatal(err)
	}
	// Down ignores stdin: Garden sends null, older ones {} or nothing.
	for _, stdin := range []string{"null", "", "{{{"} {
		if _, err := f.handle(t, "down", "h", stdin); err != nil {
			t.Fatalf("down with stdin %q: %v", stdin, err)
		}
	}
	if len(f.mnt.mounts) != 0 || len(f.ports.pool.Acquired()) != 0 || len(f.cni.added) != 0 {
		t.Errorf("left behind: mounts %v ports %v cni %v", f.mnt.mounts, f.ports.pool.Acquired(), sortedKeys(f.cni.added))
	}
	if diff := cmp.Diff([]string{"add h", "del h", "del h", "del h"}, f.cni.calls); diff != "" {
		t.Errorf("CNI calls (-want +got):\n%s", diff)
	}

	t.Run("a DEL failure stops down", func(t *testing.T) {
		f := newManager()
		if _, err := f.handle(t, "up", "h", gardenUp); err != nil {
			t.Fatal(err)
		}
		f.cni.delErr = errBoom
		if err := f.m.Down(context.Background(), "h"); err == nil || err.Error() != "cni down: boom" {
			t.Fatalf("got %v", err)
		}
		if len(f.mnt.mounts) != 1 || len(f.ports.held("h")) != 2 {
			t.Errorf("down went on after DEL failed: %v %v", f.mnt.mounts, f.ports.held("h"))
		}
	})
	t.Run("unmount and release failures are reported, not returned", func(t *testing.T) {
		f := newManager()
		f.mnt.unmountErr = errBoom
		f.ports.releaseErr = errBoom
		if err := f.m.Down(context.Background(), "h"); err != nil {
			t.Fatal(err)
		}
		if want := "removing bind mount /netns/h: boom\nreleasing ports: boom\n"; f.stderr.String() != want {
			t.Errorf("stderr %q", f.stderr.String())
		}
	})
}
