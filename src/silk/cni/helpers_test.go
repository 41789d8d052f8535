package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// cell is a stand-in for a Diego cell: a "host" namespace, a fake
// silk-daemon on the test process's 127.0.0.1 (the plugin fetches from
// the calling goroutine, outside any namespace), and the plugin pointed at
// both.
type cell struct {
	host      *netnstest.NS
	hostNS    ns.NetNS
	daemon    *httptest.Server
	up        atomic.Bool
	dataDir   string
	datastore string
	plugin    *Plugin
	subnet    string
	ipv6      string // the daemon's ipv6_overlay_network; "" = IPv4-only cell
	port      int
}

func newCell(t testing.TB, subnet string) *cell {
	t.Helper()
	netnstest.RequireRoot(t)
	c := &cell{host: netnstest.New(t, "h"), subnet: subnet}
	h, err := ns.GetNS(c.host.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	c.hostNS = h
	c.up.Store(true)
	c.daemon = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.up.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(NetworkInfo{OverlaySubnet: c.subnet, MTU: 1450, IPv6OverlayNetwork: c.ipv6})
	}))
	t.Cleanup(c.daemon.Close)
	_, port, _ := net.SplitHostPort(c.daemon.Listener.Addr().String())
	fmt.Sscan(port, &c.port)
	dir := t.TempDir()
	c.dataDir = filepath.Join(dir, "host-local")
	c.datastore = filepath.Join(dir, "silk", "store.json")
	c.plugin = &Plugin{Logger: logtest.New(t), HostNS: h}
	return c
}

func (c *cell) conf(version string) []byte {
	return fmt.Appendf(nil, `{"cniVersion":%q,"name":"silk","type":"silk-cni","daemonPort":%d,"dataDir":%q,"datastore":%q,"mtu":0}`,
		version, c.port, c.dataDir, c.datastore)
}

func (c *cell) args(ctr *netnstest.NS, id string) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: id, Netns: ctr.Path, IfName: "eth0", StdinData: c.conf("1.0.0")}
}

func (c *cell) add(t testing.TB, ctr *netnstest.NS, id string) *current.Result {
	t.Helper()
	res, err := c.plugin.Add(context.Background(), c.args(ctr, id))
	if err != nil {
		t.Fatalf("ADD %s: %v", id, err)
	}
	r, err := current.GetResult(res)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func (c *cell) del(t testing.TB, ctr *netnstest.NS, id string) {
	t.Helper()
	if err := c.plugin.Del(context.Background(), c.args(ctr, id)); err != nil {
		t.Fatalf("DEL %s: %v", id, err)
	}
}

// ipamFiles lists the reservation files (IP names only).
func (c *cell) ipamFiles(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(c.dataDir, "ipam", "silk"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			out = append(out, e.Name())
		}
	}
	return out
}

func (c *cell) store(t testing.TB) map[string]Container {
	t.Helper()
	all, err := Store{Path: c.datastore}.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// links lists link names in a namespace, loopback excluded.
func links(t testing.TB, n *netnstest.NS) []string {
	t.Helper()
	var names []string
	err := n.Do(func() error {
		ls, err := netlink.LinkList()
		for _, l := range ls {
			if l.Attrs().Name != "lo" {
				names = append(names, l.Attrs().Name)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func readSysctl(t testing.TB, n *netnstest.NS, key string) string {
	t.Helper()
	var v string
	if err := n.Do(func() error {
		b, err := os.ReadFile(filepath.Join("/proc/sys", key))
		v = strings.TrimSpace(string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v
}

func cniError(t testing.TB, err error) *types.Error {
	t.Helper()
	var e *types.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a CNI error", err, err)
	}
	return e
}
