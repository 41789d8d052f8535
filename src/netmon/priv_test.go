package netmon

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// dashSLines is upstream's count for one table: the lines of
// `iptables -S -t <table>` (stdout only).
func dashSLines(t *testing.T, ns *netnstest.NS, binary, table string) int {
	t.Helper()
	out, err := ns.Command(binary, "-S", "-t", table).Output()
	if err != nil {
		t.Fatalf("%s -S -t %s: %v", binary, table, err)
	}
	return len(strings.Split(strings.TrimSpace(string(out)), "\n"))
}

// TestIPTablesRulesPrivileged counts real tables with both backends and
// checks the count against upstream's `iptables -S` line count.
func TestIPTablesRulesPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range []iptables.Flavor{iptables.FlavorNFT, iptables.FlavorLegacy} {
		t.Run(string(fl), func(t *testing.T) {
			netnstest.RequireIPTables(t, fl)
			ns := netnstest.New(t, "nmon")
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(t.TempDir(), "iptables.lock")})
			ipt, _, _ := d.Binaries()
			r := IPTablesRules{Tables: d}
			ctx := context.Background()
			count := func() int {
				t.Helper()
				var n int
				if err := ns.Do(func() (err error) { n, err = r.CountRules(ctx); return err }); err != nil {
					t.Fatal(err)
				}
				return n
			}
			upstream := func() int {
				return dashSLines(t, ns, ipt, "filter") + dashSLines(t, ns, ipt, "nat")
			}

			// A fresh namespace: the built-in chains only.
			if got, want := count(), upstream(); got != 7 || got != want {
				t.Errorf("fresh: count = %d, iptables -S lines = %d, want 7", got, want)
			}
			ns.Run(t, ipt, "-N", "netmon-test")
			ns.Run(t, ipt, "-A", "netmon-test", "-m", "comment", "--comment", "two words", "-j", "ACCEPT")
			ns.Run(t, ipt, "-A", "FORWARD", "-j", "netmon-test")
			ns.Run(t, ipt, "-t", "nat", "-A", "POSTROUTING", "-s", "10.255.7.0/24", "!", "-o", "silk-vtep", "-j", "MASQUERADE")
			ns.Run(t, ipt, "-t", "mangle", "-A", "PREROUTING", "-j", "ACCEPT") // not counted
			if got, want := count(), upstream(); got != 11 || got != want {
				t.Errorf("count = %d, iptables -S lines = %d, want 11", got, want)
			}
		})
	}
}

// TestCountInterfacesPrivileged counts a fresh namespace's links as
// net.Interfaces (upstream's count) does.
func TestCountInterfacesPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "nmon")
	ns.Run(t, "ip", "link", "add", "nmon0", "type", "veth", "peer", "name", "nmon1")
	err := ns.Do(func() error {
		n, err := CountInterfaces()
		if err != nil {
			return err
		}
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if n != 3 || n != len(ifs) {
			return fmt.Errorf("CountInterfaces = %d, net.Interfaces = %d, want 3 (lo and a veth pair)", n, len(ifs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
