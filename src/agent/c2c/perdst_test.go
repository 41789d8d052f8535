package c2c

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/testsupport/golden"
)

func planChains(t testing.TB, in Inputs) Chains {
	t.Helper()
	c, err := PlanChains(in, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPlanChainsGolden: the main chain and each destination chain, as
// iptables-save lists them (main first, then the destination chains by name).
func TestPlanChainsGolden(t *testing.T) {
	c := planChains(t, Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100, IngressTag: "FFFF"})
	golden.Check(t, filepath.Join("testdata", "per-destination-chains.rules"), []byte(chainsText(c)))
}

// chainsText renders chains as iptables-save lists them: the main chain
// (as vpa--1700000000000000), then the destination chains by name.
func chainsText(c Chains) string {
	var b strings.Builder
	for _, r := range c.Main {
		b.WriteString("-A vpa--1700000000000000 " + string(r) + "\n")
	}
	for _, name := range sortedKeys(c.Dst) {
		for _, r := range c.Dst[name] {
			b.WriteString("-A " + name + " " + string(r) + "\n")
		}
	}
	return b.String()
}

// TestPlanChainsKeepsUpstreamVerdicts: every destination chain holds, in
// order, exactly the rules of the single chain for that destination, and
// the main chain is the single chain without them, one jump standing
// where each destination's first rule was. A packet to a destination
// meets the same rules in the same order either way.
func TestPlanChainsKeepsUpstreamVerdicts(t *testing.T) {
	for _, in := range []Inputs{
		{Containers: cell, Policies: policies, IngressTag: "FFFF"},
		{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 10},
		bigInputs(50, 7),
	} {
		flat := plan(t, in)
		c := planChains(t, in)
		if off, err := PlanChains(in, nil, false); err != nil || !slices.Equal(off.Main, flat) || len(off.Dst) != 0 {
			t.Fatalf("without per-destination chains the plan must be Plan's: %v", err)
		}
		var expanded []iptables.Rule
		for _, r := range c.Main {
			if t2, _ := r.Target(); IsDstChain(t2) {
				ip := netip.MustParseAddr(strings.TrimPrefix(t2, DstChainPrefix))
				if r != iptables.Rule("-d "+ip.String()+"/32 -j "+t2) {
					t.Errorf("jump %q", r)
				}
				rs := c.Dst[t2]
				if len(rs) == 0 {
					t.Errorf("empty destination chain %s", t2)
				}
				for _, x := range rs {
					if !strings.HasPrefix(string(x), "-d "+ip.String()+"/32 ") {
						t.Errorf("%s holds a rule for another destination: %q", t2, x)
					}
				}
				expanded = append(expanded, rs...)
				continue
			}
			expanded = append(expanded, r)
		}
		if len(expanded) != len(flat) {
			t.Fatalf("expanded %d rules, single chain %d", len(expanded), len(flat))
		}
		// Same rules; per destination the same order.
		if diff := cmp.Diff(sortedRules(flat), sortedRules(expanded)); diff != "" {
			t.Fatalf("rules differ (-single +per-destination):\n%s", diff)
		}
		for name := range c.Dst {
			ip := strings.TrimPrefix(name, DstChainPrefix)
			if diff := cmp.Diff(forDst(flat, ip), forDst(expanded, ip)); diff != "" {
				t.Errorf("%s: order differs:\n%s", name, diff)
			}
		}
	}
}

func sortedRules(rs []iptables.Rule) []iptables.Rule {
	out := slices.Clone(rs)
	slices.Sort(out)
	return out
}

func forDst(rs []iptables.Rule, ip string) []iptables.Rule {
	var out []iptables.Rule
	for _, r := range rs {
		if strings.HasPrefix(string(r), "-d "+ip+"/32 ") {
			out = append(out, r)
		}
	}
	return out
}

// fakeChains reads every chain of ours from the fake.
func fakeChains(t *testing.T, fake *iptablestest.Tables, main string) Chains {
	t.Helper()
	st, err := fake.Save(context.Background(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	c := Chains{Main: st.Rules(main), Dst: map[string][]iptables.Rule{}}
	for _, name := range st.ChainNames(IsDstChain) {
		c.Dst[name] = st.Rules(name)
	}
	return c
}

func checkChains(t *testing.T, step string, want, got Chains) {
	t.Helper()
	if !equalChains(want, got) {
		t.Fatalf("%s: chains (-want +got):\n%s", step, cmp.Diff(want, got))
	}
}

func TestEnforcerPerDestinationChains(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	e := NewEnforcer(fake)
	in := bigInputs(100, 10)
	want := planChains(t, in)
	res, err := e.EnforceChains(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	checkChains(t, "first sync", want, fakeChains(t, fake, res.Chain))
	steps := []struct {
		name                   string
		change                 func(in *Inputs)
		wantAdded, wantRemoved int
		touched                []string // chains the transaction names
	}{
		{"add a policy between local apps", func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0003", "0004", "app-0050", "0033", "udp", 53, 53))
		}, 1, 0, []string{"vpa-dst-10.255.1.52"}},
		{"delete a policy", func(in *Inputs) { in.Policies = in.Policies[1:] }, 0, 1, []string{"vpa-dst-10.255.1.2"}},
		{"a new destination", func(in *Inputs) {
			in.Containers = append(in.Containers, Container{Handle: "new", IP: "10.255.9.9", AppID: "app-new"})
			in.Policies = append(in.Policies, pol("app-0007", "0008", "app-new", "0FFF", "tcp", 1, 2))
		}, 2, 0, []string{res.Chain, "vpa-dst-10.255.9.9"}},
		{"logging on", func(in *Inputs) { in.Logging, in.AcceptedUDPLogsPerSec = true, 100 }, 1001, 0, nil},
		// The jump and the chain's LOG and ACCEPT.
		{"destination gone", func(in *Inputs) { in.Containers = in.Containers[:len(in.Containers)-1] }, 0, 3, []string{res.Chain, "vpa-dst-10.255.9.9"}},
	}
	for _, s := range steps {
		s.change(&in)
		want := planChains(t, in)
		tx, _, _ := deltaChains(res.Chain, e.enforced, want)
		res, err := e.EnforceChains(ctx, want)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Full || res.Added != s.wantAdded || res.Removed != s.wantRemoved {
			t.Errorf("%s: %+v, want +%d -%d incremental", s.name, res, s.wantAdded, s.wantRemoved)
		}
		if s.touched != nil {
			var names []string
			for _, l := range tx.Lines() {
				f := strings.Fields(strings.TrimPrefix(l, ":"))
				if strings.HasPrefix(l, ":") {
					names = append(names, f[0])
				} else {
					names = append(names, f[1])
				}
			}
			slices.Sort(names)
			if diff := cmp.Diff(s.touched, slices.Compact(names)); diff != "" {
				t.Errorf("%s: chains written (-want +got):\n%s\n%s", s.name, diff, tx)
			}
		}
		checkChains(t, s.name, want, fakeChains(t, fake, res.Chain))
	}
	// Drift: someone deletes a destination chain's rule; the drift check
	// repairs it without touching the rest.
	if err := fake.Apply(ctx, iptables.NewTx(iptables.Filter).DeleteNum("vpa-dst-10.255.1.2", 1)); err != nil {
		t.Fatal(err)
	}
	e.Invalidate()
	want = planChains(t, in)
	res, err = e.EnforceChains(ctx, want)
	if err != nil || !res.Full || !res.Changed {
		t.Fatalf("drift repair: %+v %v", res, err)
	}
	checkChains(t, "drift repair", want, fakeChains(t, fake, res.Chain))
	// A restart with nothing to change writes nothing.
	applied := fake.Applied
	if res2, err := NewEnforcer(fake).EnforceChains(ctx, want); err != nil || fake.Applied != applied || res2.Chain != res.Chain {
		t.Errorf("idle restart: %+v %v, writes %d→%d", res2, err, applied, fake.Applied)
	}
	// Switched off (a restart with iptables_per_destination_chains false):
	// the main chain is adopted and every destination chain removed.
	flat := plan(t, in)
	res, err = NewEnforcer(fake).Enforce(ctx, flat)
	if err != nil {
		t.Fatal(err)
	}
	checkChains(t, "switched off", Chains{Main: flat}, fakeChains(t, fake, res.Chain))
	// And on again.
	res, err = NewEnforcer(fake).EnforceChains(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	checkChains(t, "switched on", want, fakeChains(t, fake, res.Chain))
}

// TestEnforcerRemovesDestinationChainsOfAStaleMainChain: a leftover vpa--
// chain's destination chains go with it, and a jump to one from a chain
// not ours does not block its removal.
func TestEnforcerRemovesStaleDestinationChains(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	tx := iptables.NewTx(iptables.Filter).
		DeclareChain("vpa-dst-10.255.7.7").Append("vpa-dst-10.255.7.7", "-j ACCEPT").
		DeclareChain("vpa--1500000000000000").Append("vpa--1500000000000000", "-d 10.255.7.7/32 -j vpa-dst-10.255.7.7").
		Append("FORWARD", "-j vpa--1500000000000000").
		DeclareChain("someone-else").Append("someone-else", "-j vpa-dst-10.255.7.7")
	if err := fake.Apply(ctx, tx); err != nil {
		t.Fatal(err)
	}
	want := planChains(t, Inputs{Containers: cell, Policies: policies})
	res, err := NewEnforcer(fake).EnforceChains(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	checkChains(t, "converged", want, fakeChains(t, fake, res.Chain))
	if got := chainRules(t, fake, "someone-else"); len(got) != 0 {
		t.Errorf("jump to a removed chain left: %q", got)
	}
}
