package cniwrapper

import (
	"context"
	"maps"
	"slices"
	"testing"

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
		ns := cell.Outside
		if from != nil {
			ns = from.NS
		}
		if got := nfttest.Connects(t, ns, to); got != want {
			t.Errorf("%s: → %s connected %t, want %t", step, to, got, want)
		}
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
