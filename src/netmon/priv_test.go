package netmon

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/testtier"
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

// TestNFTTablePrivileged counts a table inet netman holding every kind of
// object the backend writes: base and regular chains, a map, a hash set,
// a concatenated interval set, a plain interval set (whose intervals the
// kernel holds as start and end elements), a rate-limit meter (with a
// timeout) and an anonymous set in a rule; and another table, not
// counted.
func TestNFTTablePrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		testtier.Unavailable(t, "nft is not installed (Debian: apt-get install nftables)")
	}
	ns := netnstest.New(t, "nmon")
	count := func() NFTCounts {
		t.Helper()
		var c NFTCounts
		if err := ns.Do(func() (err error) { c, err = NFTTable{}.CountNFT(context.Background()); return err }); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := count(); got != (NFTCounts{}) {
		t.Errorf("no table: %+v, want zeros", got)
	}
	ruleset := `
table inet netman {
	map overlay-dispatch {
		type ipv4_addr : verdict
		elements = { 10.255.1.2 : jump overlay--a, 10.255.1.3 : jump overlay--b }
	}
	set c2c-policies {
		type mark . ipv4_addr . inet_proto . inet_service
		elements = { 0x00000001 . 10.255.1.2 . tcp . 8080, 0x00000001 . 10.255.1.3 . tcp . 8080, 0x00000002 . 10.255.1.3 . udp . 53 }
	}
	set c2c-policy-ranges {
		type mark . ipv4_addr . inet_proto . inet_service
		flags interval
		elements = { 0x00000003 . 10.255.1.2 . tcp . 9000-9010 }
	}
	set asg--a--all {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.0/8, 192.168.1.1, 172.16.0.0-172.16.0.9 }
	}
	set asg--a--rl {
		type ipv4_addr . inet_service
		size 65535
		flags dynamic,timeout
		timeout 10s
	}
	chain overlay--a { ct state established,related accept; reject; }
	chain overlay--b { reject; }
	chain asg--a {
		ct state new update @asg--a--rl { ip daddr . tcp dport limit rate over 100/second burst 1000 packets } reject
		ip daddr { 10.10.0.0/16, 169.254.0.0/16 } reject
		ip daddr @asg--a--all accept
		reject
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr vmap @overlay-dispatch
	}
}
table inet other {
	set s { type ipv4_addr; elements = { 1.1.1.1 } }
	chain c { accept; }
}
`
	cmd := ns.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v: %s", err, out)
	}
	// A packet through the meter gives it an entry, which is traffic,
	// not configuration.
	ns.Run(t, "nft", "add", "element", "inet", "netman", "asg--a--rl", "{ 10.0.0.1 . 443 timeout 10s }")
	want := NFTCounts{Rules: 2 + 1 + 4 + 1, Elements: 2 + 3 + 1 + 3}
	if got := count(); got != want {
		t.Errorf("count = %+v, want %+v", got, want)
	}
}
