package cniwrapper

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// TestNFTContainersOnKernel sets up two containers on a namespace cell as
// ADD does in nftables mode and checks real connections: egress is
// rejected until rules arrive, then garden's netOut rules allow one
// destination; the default deny between containers; a host service
// allowed and another host port rejected; a port mapping from the outside
// (DNAT, and the ingress mark letting it through the overlay chain); and
// DEL leaves the other container's objects and nothing of the deleted one.
func TestNFTContainersOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	cell := nfttest.NewCell(t, "10.244.0.3")
	a := cell.AddContainer(t, "10.255.1.2")
	b := cell.AddContainer(t, "10.255.1.3")
	nfttest.Listen(t, cell.Outside, "10.244.0.3:80")
	nfttest.Listen(t, cell.Outside, "10.244.0.3:81")
	nfttest.Listen(t, a.NS, "10.255.1.2:8080")
	nfttest.Listen(t, cell.NS, "10.244.0.1:9000") // a host service
	nfttest.Listen(t, cell.NS, "10.244.0.1:9001") // not one

	var k *nft.Kernel
	cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	cfg := baseConfig(t)
	cfg.InstanceAddress = "10.244.0.1"
	cfg.HostTCPServices = []string{"10.244.0.1:9000"}
	add := func(c *nfttest.Container, handle string, mappings ...PortMapping) *NFTAddPlan {
		t.Helper()
		cfg.RuntimeConfig.PortMappings = mappings
		p, err := PlanAddNFT(cfg, Container{Handle: handle, IP: c.IP, Workload: "app", Interfaces: []string{cell.Underlay}})
		if err != nil {
			t.Fatal(err)
		}
		cell.Do(t, func() error { return NFTAdd(ctx, k, p) })
		return p
	}
	pa := add(a, "ctr-a", PortMapping{HostPort: 61001, ContainerPort: 8080})
	add(b, "ctr-b")
	var before *nft.State
	cell.Do(t, func() (err error) { before, err = k.Read(ctx); return err })

	check := func(step string, from *nfttest.Container, to string, want bool) {
		t.Helper()
		expectConnect(t, cell, step, from, to, want)
	}
	check("no egress rules yet", a, "10.244.0.3:80", false)
	check("between containers", b, "10.255.1.2:8080", false)
	check("host service", a, "10.244.0.1:9000", true)
	check("other host port", a, "10.244.0.1:9001", false)

	rs, _ := pa.NetOut([]NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange("10.244.0.3", "10.244.0.3")}, Ports: []PortRange{{Start: 80, End: 80}}}})
	cell.Do(t, func() error { return NFTSetNetOut(ctx, k, rs) })
	check("garden netOut rule", a, "10.244.0.3:80", true)
	check("garden netOut rule, other port", a, "10.244.0.3:81", false)
	// Replies leave through the egress chain too, which accepts them once
	// it has rules (as in iptables mode).
	check("port mapping", nil, "10.244.0.1:61001", true)

	cell.Do(t, func() error { return NFTDel(ctx, k, "ctr-b", b.IP) })
	var after *nft.State
	cell.Do(t, func() (err error) { after, err = k.Read(ctx); return err })
	for n := range before.Chains {
		if _, ok := after.Chains[n]; ok == (n == "input--ctr-b" || n == "netout--ctr-b" || n == "overlay--ctr-b" || n == "masquerade--ctr-b") {
			t.Errorf("after DEL of ctr-b: chain %s present %t", n, ok)
		}
	}
	for _, n := range []string{nft.MapInput, nft.MapOverlay, nft.MapMasquerade} {
		if keys := slices.Sorted(maps.Keys(after.Sets[n].Elements)); !slices.Equal(keys, []string{"10.255.1.2"}) {
			t.Errorf("after DEL of ctr-b: %s holds %q", n, keys)
		}
	}
	check("after the other container's DEL", a, "10.244.0.3:80", true)
}

// TestNFTGoldensLoad checks the ADD golden files with `nft -c -f`.
func TestNFTGoldensLoad(t *testing.T) { nfttest.CheckFiles(t, "testdata/nft-add-*.golden") }

// TestNFTPluginAddDelOnKernel runs the plugin's ADD and DEL in nftables
// mode against the real nft in a namespace cell: one container with
// garden's netOut rules (the agent answers 405) and a port mapping, one
// with dynamic ASGs whose egress stays rejected until the agent writes its
// rules, one with the first one's netOut rules, which shares its
// destination sets; real connections check the verdicts; DEL of all three
// leaves only the skeleton (the shared sets go with their last user), and
// no iptables rule is written.
func TestNFTPluginAddDelOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := t.Context()
	cell := nfttest.NewCell(t, "10.244.0.3")
	a := cell.AddContainer(t, "10.255.1.2")
	b := cell.AddContainer(t, "10.255.1.3")
	c := cell.AddContainer(t, "10.255.1.4")
	nfttest.Listen(t, cell.Outside, "10.244.0.3:80")
	nfttest.Listen(t, cell.Outside, "10.244.0.3:81")
	nfttest.Listen(t, a.NS, "10.255.1.2:8080")
	nfttest.Listen(t, b.NS, "10.255.1.3:8080")

	var k *nft.Kernel
	cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	h := newHarness(t)
	h.stdin["enforcement_backend"] = "nftables"
	h.stdin["instance_address"] = "10.244.0.1"
	h.stdin["underlay_ips"] = []string{"10.244.0.1"}
	h.plugin.NFT = func(*Config) (nft.Driver, error) { return nfttest.NSDriver{D: k, NS: cell.NS}, nil }
	h.plugin.Interfaces = func([]string) ([]string, error) { return []string{cell.Underlay}, nil }
	args := func(handle string) *skel.CmdArgs {
		a := h.args(t)
		a.ContainerID = handle
		return a
	}

	h.delegate.ip = a.IP.String()
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	h.stdin["runtimeConfig"] = map[string]any{
		"portMappings": []any{map[string]any{"host_port": 61001, "container_port": 8080}},
		"netOutRules":  []any{map[string]any{"protocol": 1, "networks": []any{map[string]any{"start": "10.244.0.3", "end": "10.244.0.3"}}, "ports": []any{map[string]any{"start": 80, "end": 80}}}},
	}
	if _, err := h.plugin.Add(ctx, args("ctr-a")); err != nil {
		t.Fatalf("ADD ctr-a: %v\nstderr: %s", err, h.stderr)
	}
	// ctr-c has ctr-a's rules: its ADD finds the skeleton and the shared
	// destination sets in place, so both its transactions (chains and
	// dispatch entries, then its egress chain) go over netlink, no nft.
	h.delegate.ip = c.IP.String()
	h.stdin["runtimeConfig"] = map[string]any{"netOutRules": h.stdin["runtimeConfig"].(map[string]any)["netOutRules"]}
	runs := k.NetlinkRuns()
	if _, err := h.plugin.Add(ctx, args("ctr-c")); err != nil {
		t.Fatalf("ADD ctr-c: %v\nstderr: %s", err, h.stderr)
	}
	if got := k.NetlinkRuns() - runs; got != 2 {
		t.Errorf("ADD ctr-c: %d transactions over netlink, want 2", got)
	}
	h.delegate.ip = b.IP.String()
	delete(h.agent.status, "/force-asgs-for-container")
	h.stdin["runtimeConfig"] = map[string]any{}
	if _, err := h.plugin.Add(ctx, args("ctr-b")); err != nil {
		t.Fatalf("ADD ctr-b: %v\nstderr: %s", err, h.stderr)
	}

	check := func(step string, from *nfttest.Container, to string, want bool) {
		t.Helper()
		expectConnect(t, cell, step, from, to, want)
	}
	check("garden netOut rule", a, "10.244.0.3:80", true)
	check("garden netOut rule, other port", a, "10.244.0.3:81", false)
	check("garden netOut rule, shared sets", c, "10.244.0.3:80", true)
	check("garden netOut rule, shared sets, other port", c, "10.244.0.3:81", false)
	check("dynamic ASGs, before the agent's rules", b, "10.244.0.3:80", false)
	check("port mapping", nil, "10.244.0.1:61001", true)
	check("between containers", b, "10.255.1.2:8080", false)
	check("between containers", a, "10.255.1.3:8080", false)

	if out := cell.NS.Run(t, "iptables-save"); strings.Contains(out, "netout--") || strings.Contains(out, "overlay--") {
		t.Errorf("iptables rules written in nftables mode:\n%s", out)
	}

	sharedSets := func() []string {
		var names []string
		var st *nft.State
		cell.Do(t, func() (err error) { st, err = k.Read(ctx); return err })
		for n := range st.Sets {
			if strings.HasPrefix(n, nft.SharedSetPrefix) {
				names = append(names, n)
			}
		}
		return names
	}
	if got := sharedSets(); len(got) != 6 {
		t.Fatalf("shared destination sets of ctr-a and ctr-c: %q, want 6", got)
	}
	for _, handle := range []string{"ctr-b", "ctr-a", "ctr-c"} {
		h.delegate.ip = map[string]string{"ctr-a": a.IP.String(), "ctr-b": b.IP.String(), "ctr-c": c.IP.String()}[handle]
		if err := h.plugin.Del(ctx, args(handle)); err != nil {
			t.Fatalf("DEL %s: %v\nstderr: %s", handle, err, h.stderr)
		}
		if handle == "ctr-a" {
			// ctr-c still looks the shared sets up.
			if got := sharedSets(); len(got) != 6 {
				t.Errorf("shared sets after DEL of ctr-a: %q, want ctr-c's 6", got)
			}
			check("garden netOut rule after the other container's DEL", c, "10.244.0.3:80", true)
		}
	}
	if h.stderr.Len() != 0 {
		t.Errorf("stderr: %s", h.stderr)
	}
	var after *nft.State
	cell.Do(t, func() (err error) { after, err = k.Read(ctx); return err })
	want := nft.StateOf(nft.Skeleton())
	want.Table = true
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("after DEL of all three (-skeleton +table):\n%s", diff)
	}
	check("port mapping after DEL", nil, "10.244.0.1:61001", false)
}

// gardenIPTables is Garden's global iptables layout (guardian's
// kawasaki/iptables setup script, default chain names, interface prefix
// w1): INPUT and FORWARD send packets from Garden's own interfaces (w1+)
// to w--input and w--forward, which end in a REJECT and a DROP; nat
// PREROUTING, OUTPUT (to lo) and POSTROUTING jump to w--prerouting and
// w--postrouting. underlay is the cell's default interface.
func gardenIPTables(underlay string) [][]string {
	return [][]string{
		{"-N", "w--input"},
		{"-A", "w--input", "-i", underlay, "-j", "ACCEPT"},
		{"-A", "w--input", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "w--input", "-j", "REJECT", "--reject-with", "icmp-host-prohibited"},
		{"-A", "INPUT", "-i", "w1+", "-j", "w--input"},
		{"-N", "w--forward"},
		{"-A", "w--forward", "-i", underlay, "-j", "ACCEPT"},
		{"-A", "w--forward", "-j", "DROP"},
		{"-N", "w--default"},
		{"-A", "w--default", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "w--default", "-d", "169.254.169.254/32", "-j", "REJECT"},
		{"-A", "FORWARD", "-i", "w1+", "-j", "w--forward"},
		{"-t", "nat", "-N", "w--prerouting"},
		{"-t", "nat", "-A", "PREROUTING", "-j", "w--prerouting"},
		{"-t", "nat", "-A", "OUTPUT", "-o", "lo", "-j", "w--prerouting"},
		{"-t", "nat", "-N", "w--postrouting"},
		{"-t", "nat", "-A", "POSTROUTING", "-j", "w--postrouting"},
	}
}

// TestNFTCoexistsWithGardenIPTables runs a cell in nftables mode beside
// Garden's iptables chains, on both iptables backends: the containers'
// allowed traffic (garden netOut rules, a host service, a port mapping)
// passes and the denied (other egress, between containers, other host
// ports) is denied, as without Garden's rules. (The agent's c2c allow
// beside iptables chains is TestNFTCoexistsWithIPTables in src/agent/c2c.)
func TestNFTCoexistsWithGardenIPTables(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctx := t.Context()
			cell := nfttest.NewCell(t, "10.244.0.3")
			for _, args := range gardenIPTables(cell.Underlay) {
				cell.NS.Run(t, "iptables-"+string(fl), append([]string{"-w"}, args...)...)
			}
			a := cell.AddContainer(t, "10.255.1.2")
			b := cell.AddContainer(t, "10.255.1.3")
			nfttest.Listen(t, cell.Outside, "10.244.0.3:80")
			nfttest.Listen(t, cell.Outside, "10.244.0.3:81")
			nfttest.Listen(t, a.NS, "10.255.1.2:8080")
			nfttest.Listen(t, cell.NS, "10.244.0.1:9000")
			nfttest.Listen(t, cell.NS, "10.244.0.1:9001")

			var k *nft.Kernel
			cell.Do(t, func() (err error) { k, err = nft.New(); return err })
			cfg := baseConfig(t)
			cfg.InstanceAddress = "10.244.0.1"
			cfg.HostTCPServices = []string{"10.244.0.1:9000"}
			for _, c := range []struct {
				ctr    *nfttest.Container
				handle string
				pm     []PortMapping
			}{{a, "ctr-a", []PortMapping{{HostPort: 61001, ContainerPort: 8080}}}, {b, "ctr-b", nil}} {
				cfg.RuntimeConfig.PortMappings = c.pm
				p, err := PlanAddNFT(cfg, Container{Handle: c.handle, IP: c.ctr.IP, Workload: "app", Interfaces: []string{cell.Underlay}})
				if err != nil {
					t.Fatal(err)
				}
				rs, _ := p.NetOut([]NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange("10.244.0.3", "10.244.0.3")}, Ports: []PortRange{{Start: 80, End: 80}}}})
				cell.Do(t, func() error {
					if err := NFTAdd(ctx, k, p); err != nil {
						return err
					}
					return NFTSetNetOut(ctx, k, rs)
				})
			}
			check := func(step string, from *nfttest.Container, to string, want bool) {
				t.Helper()
				expectConnect(t, cell, step, from, to, want)
			}
			check("ASG (garden netOut rule)", a, "10.244.0.3:80", true)
			check("ASG, other port", a, "10.244.0.3:81", false)
			check("host service", a, "10.244.0.1:9000", true)
			check("other host port", a, "10.244.0.1:9001", false)
			check("between containers", b, "10.255.1.2:8080", false)
			check("port mapping", nil, "10.244.0.1:61001", true)
			if out := cell.NS.Run(t, "iptables-"+string(fl)+"-save"); !strings.Contains(out, "-A w--forward -j DROP") {
				t.Errorf("Garden's rules are gone:\n%s", out)
			}
		})
	}
}

// expectConnect checks that a TCP connection from a container (or, with
// from nil, from outside the cell) to `to` succeeds exactly when want says.
func expectConnect(t *testing.T, cell *nfttest.Cell, step string, from *nfttest.Container, to string, want bool) {
	t.Helper()
	ns := cell.Outside
	if from != nil {
		ns = from.NS
	}
	if got := nfttest.Connects(t, ns, to); got != want {
		t.Errorf("%s: → %s connected %t, want %t", step, to, got, want)
	}
}

// lyingHas says every object exists: NFTSetNetOut then sends its
// chains-only transaction even when the shared sets are gone, as when a
// DEL removes them between its check and its write.
type lyingHas struct{ nft.Driver }

func (lyingHas) Has(context.Context, []string, []string) bool { return true }

// TestNFTSharedSetsConcurrentAddDel runs ADD (both transactions) and DEL
// of containers with the same netOut rules from concurrent goroutines,
// as concurrent CNI processes do, on the kernel: every call succeeds
// (a chains-only write whose shared sets a DEL removed meanwhile is
// retried with the sets), and at the end only the skeleton is left —
// the last DEL removed the shared sets. Then a write whose sets are gone
// when it runs recreates them.
func TestNFTSharedSetsConcurrentAddDel(t *testing.T) {
	ctx := t.Context()
	k, d := nfttest.NewNSKernel(t, "shr")
	ns := d.NS
	cfg := baseConfig(t)
	rules := []NetOutRule{{Protocol: 1, Networks: []IPRange{gardenRange("10.244.0.3", "10.244.0.9")}, Ports: []PortRange{{Start: 80, End: 90}}},
		{Protocol: 0, Networks: []IPRange{gardenRange("52.0.0.1", "52.0.0.1")}}}
	lifecycle := func(worker, i int, drv nft.Driver) error {
		handle := fmt.Sprintf("w%d-%d", worker, i)
		ip := netip.AddrFrom4([4]byte{10, 255, byte(worker), byte(i + 2)})
		p, err := PlanAddNFT(cfg, Container{Handle: handle, IP: ip, Workload: "app", Interfaces: []string{"eth0"}})
		if err != nil {
			return err
		}
		if err := NFTAdd(ctx, drv, p); err != nil {
			return fmt.Errorf("ADD %s: %w", handle, err)
		}
		rs, _ := p.NetOut(rules)
		if err := NFTSetNetOut(ctx, drv, rs); err != nil {
			return fmt.Errorf("netOut %s: %w", handle, err)
		}
		if err := NFTDel(ctx, drv, handle, ip); err != nil {
			return fmt.Errorf("DEL %s: %w", handle, err)
		}
		return nil
	}
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 6 {
				drv := nft.Driver(d)
				if i%2 == 1 {
					drv = lyingHas{d}
				}
				if err := lifecycle(w, i, drv); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var after *nft.State
	if err := ns.Do(func() (err error) { after, err = k.Read(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	want := nft.StateOf(nft.Skeleton())
	want.Table = true
	if diff := cmp.Diff(want, after); diff != "" {
		t.Errorf("after every DEL (-skeleton +table):\n%s", diff)
	}

	// The sets are gone, but Has says they are there: the chains-only
	// transaction fails and the whole one runs.
	p, err := PlanAddNFT(cfg, Container{Handle: "late", IP: netip.MustParseAddr("10.255.9.2"), Workload: "app", Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := NFTAdd(ctx, d, p); err != nil {
		t.Fatal(err)
	}
	rs, _ := p.NetOut(rules)
	if err := NFTSetNetOut(ctx, lyingHas{d}, rs); err != nil {
		t.Fatal(err)
	}
	if err := ns.Do(func() (err error) { after, err = k.Read(ctx); return err }); err != nil {
		t.Fatal(err)
	}
	for _, s := range rs.Sets {
		got := after.Sets[s.Name]
		if got == nil || len(got.Elements) != len(s.Elements) {
			t.Errorf("set %s after the retried write: %+v, want %d elements", s.Name, got, len(s.Elements))
		}
	}
	if err := NFTDel(ctx, d, "late", netip.MustParseAddr("10.255.9.2")); err != nil {
		t.Fatal(err)
	}
}
