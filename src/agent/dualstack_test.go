package agent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// dualStack turns the fixture's cycle into a dual-stack one
// (ipv6_overlay_network set) on the iptables backend, its IPv6 twin in
// the returned fake ip6tables.
func dualStack(t *testing.T, f *fixture, perDst bool) *iptablestest.Tables {
	t.Helper()
	cfg := Config{IPTablesAcceptedUDPLogsPerSec: 100, IPv6OverlayNetwork: overlay6.DefaultNetwork}
	f.policies.rules = cfg.c2cRules()
	ip6 := iptablestest.New()
	f.policies.enforcer = iptablesC2C{enforcer: c2c.NewEnforcer(f.ipt), enforcer6: c2c.NewEnforcer(ip6), perDst: perDst}
	return ip6
}

// TestDualStackIPTables: with ipv6_overlay_network the policy cycle
// writes app-a's MARK and app-b's accept for their IPv6 addresses into a
// vpa-- chain of ip6tables jumped from FORWARD, leaves the iptables chain
// as an IPv4-only agent writes it, follows a policy change in both, and
// the drift check puts back an IPv6 rule deleted by hand.
func TestDualStackIPTables(t *testing.T) {
	ctx := context.Background()
	v4only := newFixture(t, false, 1)
	v4only.server.set(policyAB(8080))
	if err := v4only.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, false, 1)
	ip6 := dualStack(t, f, false)
	f.policies.driftEvery = time.Hour
	f.server.set(policyAB(8080))
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	rules4 := func(fx *fixture) []iptables.Rule {
		st, err := fx.ipt.Save(ctx, iptables.Filter)
		if err != nil {
			t.Fatal(err)
		}
		return st.Rules(fx.policies.enforcer.Chain())
	}
	if got, want := rules4(f), rules4(v4only); !slices.Equal(got, want) {
		t.Errorf("iptables chain differs from an IPv4-only agent's:\n%q\n%q", got, want)
	}
	rules6 := func() (chain string, rs []iptables.Rule) {
		st, err := ip6.Save(ctx, iptables.Filter)
		if err != nil {
			t.Fatal(err)
		}
		fwd := st.Rules("FORWARD")
		if len(fwd) == 0 {
			t.Fatalf("no jump in ip6tables FORWARD:\n%s", ip6.Dump(iptables.Filter))
		}
		chain, _ = fwd[0].Target()
		return chain, st.Rules(chain)
	}
	chain, got := rules6()
	want := []iptables.Rule{
		`-s fd73:696c:6b::aff:102/128 -m comment --comment "src:app-a" -j MARK --set-xmark 0x1/0xffffffff`,
		`-d fd73:696c:6b::aff:103/128 -p tcp -m tcp --dport 8080 -m mark --mark 0x1 -m comment --comment "src:app-a_dst:app-b" -j ACCEPT`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("ip6tables %s = %q, want %q", chain, got, want)
	}
	f.server.set(policyAB(9090))
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, got := rules6(); len(got) != 2 || !strings.Contains(string(got[1]), "--dport 9090 ") {
		t.Fatalf("after the change ip6tables holds %q", got)
	}
	if !f.accepts(t, 9090) || f.accepts(t, 8080) {
		t.Fatalf("after the change iptables holds %q", rules4(f))
	}
	// By hand: ip6tables -D vpa--... <accept>.
	_, got = rules6()
	if err := ip6.Apply(ctx, iptables.NewTx(iptables.Filter).Delete(chain, got[1])); err != nil {
		t.Fatal(err)
	}
	f.policies.driftEvery = time.Nanosecond
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, repaired := rules6(); !slices.Equal(repaired, got) {
		t.Fatalf("ip6tables drift not repaired: %q, want %q", repaired, got)
	}
}

// TestDualStackPerDestinationChains: with iptables_per_destination_chains
// the ip6tables twin has app-b's accept in vpa-dst-10.255.1.3 (the
// container's IPv4 name), jumped by its IPv6 address.
func TestDualStackPerDestinationChains(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, false, 1)
	ip6 := dualStack(t, f, true)
	f.server.set(policyAB(8080))
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := ip6.Save(ctx, iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	fwd := st.Rules("FORWARD")
	if len(fwd) != 1 {
		t.Fatalf("FORWARD = %q", fwd)
	}
	main, _ := fwd[0].Target()
	if !slices.Contains(st.Rules(main), iptables.Rule("-d fd73:696c:6b::aff:103/128 -j vpa-dst-10.255.1.3")) {
		t.Errorf("%s = %q", main, st.Rules(main))
	}
	want := []iptables.Rule{`-d fd73:696c:6b::aff:103/128 -p tcp -m tcp --dport 8080 -m mark --mark 0x1 -m comment --comment "src:app-a_dst:app-b" -j ACCEPT`}
	if got := st.Rules("vpa-dst-10.255.1.3"); !slices.Equal(got, want) {
		t.Errorf("vpa-dst-10.255.1.3 = %q, want %q", got, want)
	}
}

// TestDualStackNFTables: in nftables mode the dual-stack cycle writes the
// policy's element for app-b's IPv6 address into c2c-policies6 beside the
// IPv4 one, and app-a's tag into c2c-tags6.
func TestDualStackNFTables(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, false, 1)
	f.policies.rules = Config{IPTablesAcceptedUDPLogsPerSec: 100, IPv6OverlayNetwork: overlay6.DefaultNetwork}.c2cRules()
	k := nft.NewFake()
	f.policies.enforcer = newNFTC2C(k)
	f.server.set(policyAB(8080))
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := k.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	keys := func(set string) []string {
		s := st.Sets[set]
		if s == nil {
			t.Fatalf("no set %s", set)
		}
		var out []string
		for key, v := range s.Elements {
			if v != "" {
				key += " : " + v
			}
			out = append(out, key)
		}
		slices.Sort(out)
		return out
	}
	for set, want := range map[string][]string{
		c2c.NFTPolicies:  {"0x00000001 . 10.255.1.3 . tcp . 8080"},
		c2c.NFTPolicies6: {"0x00000001 . fd73:696c:6b::aff:103 . tcp . 8080"},
		c2c.NFTTags6:     {"fd73:696c:6b::aff:102 : 0x00000001"},
	} {
		if got := keys(set); !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", set, got, want)
		}
	}
	// By hand: nft delete element inet netman c2c-policies6 { ... }; the
	// drift check puts it back.
	tx := k.NewTransaction()
	tx.Delete(&knftables.Element{Set: c2c.NFTPolicies6, Key: strings.Split("0x00000001 . fd73:696c:6b::aff:103 . tcp . 8080", " . ")})
	if err := k.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	f.policies.driftEvery = time.Nanosecond
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err = k.Read(ctx); err != nil {
		t.Fatal(err)
	}
	if got := keys(c2c.NFTPolicies6); len(got) != 1 {
		t.Errorf("c2c-policies6 after the drift check = %q", got)
	}
}

// TestIP6TablesDriverBinaries: the IPv6 twin runs the ip6tables binaries
// of the configured iptables_flavor.
func TestIP6TablesDriverBinaries(t *testing.T) {
	for flavor, want := range map[string][3]string{
		"":       {"ip6tables", "ip6tables-restore", "ip6tables-save"},
		"nft":    {"ip6tables-nft", "ip6tables-nft-restore", "ip6tables-nft-save"},
		"legacy": {"ip6tables-legacy", "ip6tables-legacy-restore", "ip6tables-legacy-save"},
	} {
		a, b, c := Config{IPTablesFlavor: flavor, IPTablesLockFile: "/tmp/x.lock"}.ip6tablesDriver().Binaries()
		if got := [3]string{a, b, c}; got != want {
			t.Errorf("flavor %q: %q, want %q", flavor, got, want)
		}
	}
}

// TestDualStackObserveEndpoints: on a dual-stack cell /c2c-containers
// gives each container its IPv6 address and /c2c-enforced names the IPv6
// overlay (what `netman trace` shows); an IPv4-only cell gives neither.
func TestDualStackObserveEndpoints(t *testing.T) {
	for _, dual := range []bool{false, true} {
		f := newFixture(t, false, 3600)
		if dual {
			dualStack(t, f, false)
		}
		f.server.set(policyAB(8080))
		if err := f.policies.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		var cs observe.Containers
		getJSONFrom(t, containersHandler(f.policies, f.store, nil), observe.PathContainers, 200, &cs)
		var got []string
		for _, c := range cs.Containers {
			got = append(got, c.IP+"="+c.IPv6)
		}
		want := []string{"10.255.1.2=", "10.255.1.3="}
		if dual {
			want = []string{"10.255.1.2=fd73:696c:6b::aff:102", "10.255.1.3=fd73:696c:6b::aff:103"}
		}
		if !slices.Equal(got, want) {
			t.Errorf("dual %v: containers %q, want %q", dual, got, want)
		}
		var e observe.Enforced
		getJSONFrom(t, enforcedHandler(f.policies, "iptables"), observe.PathEnforced, 200, &e)
		if wantNet := map[bool]string{true: overlay6.DefaultNetwork}[dual]; e.IPv6OverlayNetwork != wantNet {
			t.Errorf("dual %v: ipv6_overlay_network %q, want %q", dual, e.IPv6OverlayNetwork, wantNet)
		}
	}
}
