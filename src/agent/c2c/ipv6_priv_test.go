package c2c

import (
	"context"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// addIPv6 gives a container of an nfttest cell its dual-stack address as
// silk-cni wires it (IPV6-DESIGN §4): the derived /128 on its interface,
// fe80::1 on the host veth, a default route via fe80::1 and a /128 route
// on the cell; forwarding on. It returns the address.
func addIPv6(tb testing.TB, cell *nfttest.Cell, c *nfttest.Container) netip.Addr {
	tb.Helper()
	v6 := net6.Addr(c.IP)
	cell.NS.Run(tb, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
	// "2: c-xyz@if3: <BROADCAST,...": the container's only veth.
	f := strings.Fields(c.NS.Run(tb, "ip", "-o", "link", "show", "type", "veth"))
	if len(f) < 2 {
		tb.Fatalf("no veth in the container namespace")
	}
	inner, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
	c.NS.Run(tb, "ip", "-6", "addr", "add", v6.String()+"/128", "dev", inner, "nodad")
	cell.NS.Run(tb, "ip", "-6", "addr", "add", "fe80::1/64", "dev", c.HostVeth, "nodad")
	cell.NS.Run(tb, "ip", "-6", "route", "add", v6.String()+"/128", "dev", c.HostVeth)
	c.NS.Run(tb, "ip", "-6", "route", "add", "default", "via", "fe80::1", "dev", inner)
	return v6
}

func addrPort(a netip.Addr, port string) string { return net.JoinHostPort(a.String(), port) }

// ip6Driver is the ip6tables twin of flavor fl (what the agent builds
// from iptables_flavor on a dual-stack cell).
func ip6Driver(tb testing.TB, fl iptables.Flavor) *iptables.Driver {
	s := "-" + string(fl)
	return iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(tb.TempDir(), "iptables.lock"),
		IPTables: "ip6tables" + s, Restore: "ip6tables" + s + "-restore", Save: "ip6tables" + s + "-save"})
}

// TestIPTablesDualStackVerdictsOnKernel loads the ip6tables twin of the
// c2c plan (single chain, then per-destination chains) into a cell
// namespace on iptables-nft and iptables-legacy, behind a wrapper-style
// default deny, and checks real TCP connections over IPv6: the marked
// connection to the allowed port is accepted, another port and a source
// without policy are rejected; ip6tables-save lists back exactly the
// planned rules (so deltas delete by exact text); with logging the OK_
// line names the IPv6 addresses (the kernel prints them expanded).
func TestIPTablesDualStackVerdictsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	for _, fl := range netnstest.IPTablesFlavors(t) {
		for _, perDst := range []bool{false, true} {
			name := string(fl)
			if perDst {
				name += "/per-destination-chains"
			}
			t.Run(name, func(t *testing.T) {
				cell := nfttest.NewCell(t)
				a := cell.AddContainer(t, "10.255.1.2")
				b := cell.AddContainer(t, "10.255.1.3")
				c := cell.AddContainer(t, "10.255.1.4")
				a6, b6, c6 := addIPv6(t, cell, a), addIPv6(t, cell, b), addIPv6(t, cell, c)
				for _, port := range []string{"8080", "9090"} {
					nfttest.Listen(t, b.NS, addrPort(b6, port))
				}
				d := ip6Driver(t, fl)
				deny := iptables.NewTx(iptables.Filter).DeclareChain("overlay--hb").
					Append("overlay--hb", "-m state --state ESTABLISHED,RELATED -j ACCEPT", "-j REJECT --reject-with icmp6-port-unreachable").
					Append("FORWARD", iptables.Rule("-d "+b6.String()+"/128 -j overlay--hb"))
				cell.Do(t, func() error { return d.Apply(ctx, deny) })
				appB := "app-b-" + netnstest.UniqueName("")
				in := dual(Inputs{
					Containers: []Container{
						{Handle: "ha", IP: "10.255.1.2", AppID: "app-a"},
						{Handle: "hb", IP: "10.255.1.3", AppID: appB},
						{Handle: "hc", IP: "10.255.1.4", AppID: "app-c"},
					},
					Policies: []Policy{
						pol("app-a", "0001", appB, "0002", "tcp", 8080, 8080),
						pol(appB, "0002", "app-c", "0003", "udp", 53, 53),
					},
					AcceptedUDPLogsPerSec: 100,
				})
				e := NewEnforcer(d)
				enforce := func(in Inputs) Result {
					t.Helper()
					want, err := PlanChains6(in, perDst)
					if err != nil {
						t.Fatal(err)
					}
					var res Result
					cell.Do(t, func() (err error) { res, err = e.EnforceChains(ctx, want); return err })
					var st *iptables.State
					cell.Do(t, func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
					if diff := cmp.Diff(want.Main, st.Rules(res.Chain)); diff != "" {
						t.Fatalf("ip6tables chain (-planned +ip6tables-save):\n%s", diff)
					}
					for name, rs := range want.Dst {
						if diff := cmp.Diff(rs, st.Rules(name)); diff != "" {
							t.Fatalf("%s (-planned +ip6tables-save):\n%s", name, diff)
						}
					}
					return res
				}
				enforce(in)
				for _, tt := range []struct {
					from *nfttest.Container
					src  netip.Addr
					to   string
					want bool
				}{
					{a, a6, addrPort(b6, "8080"), true},
					{a, a6, addrPort(b6, "9090"), false},
					{c, c6, addrPort(b6, "8080"), false},
				} {
					if got := nfttest.Connects(t, tt.from.NS, tt.to); got != tt.want {
						t.Errorf("%s → %s: connected %t, want %t", tt.src, tt.to, got, tt.want)
					}
				}
				netnstest.LogAllNetns(t)
				klog := nfttest.OpenKernelLog(t)
				in.Logging = true
				if res := enforce(in); res.Full {
					t.Errorf("logging on: full resync, want a delta")
				}
				if !nfttest.Connects(t, a.NS, addrPort(b6, "8080")) {
					t.Fatal("logging on: the allowed connection failed")
				}
				line := klog.WaitFor("OK_0001_"+appB[:min(len(appB), 28-len("OK_0001_"))], 3*time.Second)
				if line == "" || !strings.Contains(line, "SRC="+a6.StringExpanded()) || !strings.Contains(line, "DST="+b6.StringExpanded()) || !strings.Contains(line, "DPT=8080") {
					t.Errorf("no OK_ log line for the accepted IPv6 connection: %q", line)
				}
				in.Policies = in.Policies[1:]
				if res := enforce(in); res.Full || res.Removed == 0 {
					t.Errorf("removing the policy: %+v", res)
				}
				if nfttest.Connects(t, a.NS, addrPort(b6, "8080")) {
					t.Error("a → b:8080 over IPv6 still connects after its policy was removed")
				}
			})
		}
	}
}

// TestNFTDualStackVerdictsOnKernel is TestNFTVerdictsOnKernel over IPv6:
// the dual-stack c2c plan in the inet netman table, real TCP connections
// between the containers' IPv6 addresses: an allowed port, a denied one,
// a source without policy, a source on another cell whose packets arrive
// marked (GBP emulated by a prerouting mark), the OK_ log line, and a
// policy removed by a delta. The IPv4 verdicts hold alongside.
func TestNFTDualStackVerdictsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	cell := nfttest.NewCell(t)
	a := cell.AddContainer(t, "10.255.1.2")
	b := cell.AddContainer(t, "10.255.1.3")
	c := cell.AddContainer(t, "10.255.1.4")
	r := cell.AddContainer(t, "10.255.9.9") // stands for a container on another cell
	a6, b6, c6, r6 := addIPv6(t, cell, a), addIPv6(t, cell, b), addIPv6(t, cell, c), addIPv6(t, cell, r)
	var k *nft.Kernel
	cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	overlayDeny(t, k, cell, a, b, c)
	cell.NS.Run(t, "nft", "add table inet gbp-emulation")
	cell.NS.Run(t, "nft", "add chain inet gbp-emulation pre { type filter hook prerouting priority mangle - 1 ; }")
	cell.NS.Run(t, "nft", "add rule inet gbp-emulation pre iifname "+r.HostVeth+" meta mark set 0x5")
	for _, port := range []string{"8080", "9090"} {
		nfttest.Listen(t, b.NS, addrPort(b6, port))
		nfttest.Listen(t, b.NS, "10.255.1.3:"+port)
	}
	appB := "app-b-" + netnstest.UniqueName("")
	in := dual(Inputs{
		Containers: []Container{
			{Handle: "ha", IP: "10.255.1.2", AppID: "app-a"},
			{Handle: "hb", IP: "10.255.1.3", AppID: appB},
			{Handle: "hc", IP: "10.255.1.4", AppID: "app-c"},
		},
		Policies: []Policy{
			pol("app-a", "0001", appB, "0002", "tcp", 8080, 8080),
			pol("app-r", "0005", appB, "0002", "tcp", 8000, 8100),
			pol(appB, "0002", "app-c", "0003", "udp", 53, 53),
		},
		AcceptedUDPLogsPerSec: 100,
	})
	e := NewNFTEnforcer(k)
	p := NewNFTPlanner()
	enforce := func(in Inputs) nft.Result {
		t.Helper()
		rs, err := p.Plan(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		var res nft.Result
		cell.Do(t, func() (err error) { res, err = e.Enforce(ctx, rs, nil); return err })
		return res
	}
	enforce(in)
	// The wrapper's default deny for IPv6 destinations (its overlay--
	// chains over IPv6 are the cni-wrapper-plugin's part of dual stack):
	// after the skeleton's dispatch, in the same base chain, so that the
	// c2c chain's accept decides. Added after the first (full) sync, which
	// writes the skeleton's base chains; later deltas leave them alone.
	for _, rule := range []string{"ip6 daddr fd73:696c:6b::/96 ct state established,related accept", "ip6 daddr fd73:696c:6b::/96 reject"} {
		cell.NS.Run(t, "nft", "add rule inet netman forward "+rule)
	}
	for _, tt := range []struct {
		from *nfttest.Container
		src  netip.Addr
		to   string
		want bool
	}{
		{a, a6, addrPort(b6, "8080"), true},
		{a, a6, addrPort(b6, "9090"), false},
		{c, c6, addrPort(b6, "8080"), false},
		{r, r6, addrPort(b6, "8080"), true},
		{r, r6, addrPort(b6, "9090"), false},
		{a, a.IP, "10.255.1.3:8080", true},
		{a, a.IP, "10.255.1.3:9090", false},
	} {
		if got := nfttest.Connects(t, tt.from.NS, tt.to); got != tt.want {
			t.Errorf("%s → %s: connected %t, want %t", tt.src, tt.to, got, tt.want)
		}
	}

	netnstest.LogAllNetns(t)
	klog := nfttest.OpenKernelLog(t)
	in.Logging = true
	if res := enforce(in); res.Full {
		t.Errorf("logging on: full resync, want a delta")
	}
	if !nfttest.Connects(t, a.NS, addrPort(b6, "8080")) {
		t.Fatal("a → b:8080 over IPv6 denied with logging on")
	}
	if line := klog.WaitFor("OK_0001_"+appB+" ", 5*time.Second); line == "" || !strings.Contains(line, "DST="+b6.StringExpanded()) {
		t.Errorf("no OK_ log line for a → b over IPv6 (got %q)", line)
	}

	in.Policies = in.Policies[1:]
	res := enforce(in)
	if res.Full || !res.Incremental || res.ElementsDeleted < 2 || res.ChainsWritten != 0 {
		t.Errorf("removing a policy: %+v", res)
	}
	if nfttest.Connects(t, a.NS, addrPort(b6, "8080")) {
		t.Error("a → b:8080 over IPv6 still connects after its policy was removed")
	}
	if !nfttest.Connects(t, r.NS, addrPort(b6, "8080")) {
		t.Error("r → b:8080 over IPv6 denied after an unrelated policy was removed")
	}
}

// TestNFTDualStackGoldensLoad checks every dual-stack c2c golden file with
// `nft -c -f`.
func TestNFTDualStackGoldensLoad(t *testing.T) { nfttest.CheckFiles(t, "testdata/nft6-*.golden") }
