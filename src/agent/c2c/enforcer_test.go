package c2c

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
)

func plan(t testing.TB, in Inputs) []iptables.Rule {
	t.Helper()
	rs, err := Plan(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func chainRules(t *testing.T, fake *iptablestest.Tables, chain string) []iptables.Rule {
	t.Helper()
	st, err := fake.Save(context.Background(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	return st.Rules(chain)
}

func newFake(t *testing.T) *iptablestest.Tables {
	fake := iptablestest.New()
	// What the cni-wrapper-plugin leaves in FORWARD.
	tx := iptables.NewTx(iptables.Filter).DeclareChain("overlay--h1").Append("overlay--h1", "-j REJECT --reject-with icmp-port-unreachable").
		Append("FORWARD", "-j overlay--h1")
	if err := fake.Apply(context.Background(), tx); err != nil {
		t.Fatal(err)
	}
	return fake
}

func TestEnforcerCreatesChainAtForwardPositionOne(t *testing.T) {
	fake := newFake(t)
	e := NewEnforcer(fake)
	e.now = func() time.Time { return time.UnixMicro(1700000000123456) }
	want := plan(t, Inputs{Containers: cell, Policies: policies})
	res, err := e.Enforce(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if res.Chain != "vpa--1700000000123456" || !res.Changed || !res.Full {
		t.Errorf("result %+v", res)
	}
	if diff := cmp.Diff(want, chainRules(t, fake, res.Chain)); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
	if got := chainRules(t, fake, "FORWARD"); len(got) != 2 || got[0] != "-j vpa--1700000000123456" {
		t.Errorf("FORWARD = %q", got)
	}
}

func TestEnforcerUnchangedPlanMakesNoCall(t *testing.T) {
	fake := newFake(t)
	e := NewEnforcer(fake)
	want := plan(t, Inputs{Containers: cell, Policies: policies})
	if _, err := e.Enforce(context.Background(), want); err != nil {
		t.Fatal(err)
	}
	applied := fake.Applied
	fake.FailNext = errors.New("no call expected")
	res, err := e.Enforce(context.Background(), append([]iptables.Rule(nil), want...))
	if err != nil || res.Changed || fake.Applied != applied {
		t.Fatalf("unchanged plan: %+v, %v, writes %d→%d", res, err, applied, fake.Applied)
	}
	fake.FailNext = nil
}

func TestEnforcerAppliesOnlyTheDelta(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	e := NewEnforcer(fake)
	in := bigInputs(100, 10)
	if _, err := e.Enforce(ctx, plan(t, in)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		name                   string
		change                 func(in *Inputs)
		wantAdded, wantRemoved int
	}{
		{"add a policy between local apps", func(in *Inputs) {
			in.Policies = append(in.Policies, pol("app-0003", "0004", "app-0050", "0033", "udp", 53, 53))
		}, 1, 0},
		{"a new source app", func(in *Inputs) {
			in.Containers = append(in.Containers, Container{Handle: "new", IP: "10.255.9.9", AppID: "app-new"})
			in.Policies = append(in.Policies, pol("app-new", "0FFF", "app-0007", "0008", "tcp", 1, 2))
		}, 2, 0},
		{"delete a policy", func(in *Inputs) { in.Policies = in.Policies[1:] }, 0, 1},
		// 1,000 + 2 added - 1 deleted accepts get a LOG rule each.
		{"logging on", func(in *Inputs) { in.Logging, in.AcceptedUDPLogsPerSec = true, 100 }, 1001, 0},
		{"logging off", func(in *Inputs) { in.Logging = false }, 0, 1001},
		{"container gone", func(in *Inputs) { in.Containers = in.Containers[1:] }, 0, 10},
	}
	for _, s := range steps {
		s.change(&in)
		want := plan(t, in)
		res, err := e.Enforce(ctx, want)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if res.Full || res.Added != s.wantAdded || res.Removed != s.wantRemoved {
			t.Errorf("%s: %+v, want +%d -%d incremental", s.name, res, s.wantAdded, s.wantRemoved)
		}
		if diff := cmp.Diff(want, chainRules(t, fake, res.Chain)); diff != "" {
			t.Fatalf("%s: chain (-want +got):\n%s", s.name, diff)
		}
	}
}

func TestEnforcerRecoversFromDrift(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	e := NewEnforcer(fake)
	in := Inputs{Containers: cell, Policies: policies}
	res, err := e.Enforce(ctx, plan(t, in))
	if err != nil {
		t.Fatal(err)
	}
	// Someone flushes our chain behind our back.
	if err := fake.Apply(ctx, iptables.NewTx(iptables.Filter).Flush(res.Chain)); err != nil {
		t.Fatal(err)
	}
	in.Policies = in.Policies[1:]
	want := plan(t, in)
	res, err = e.Enforce(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Full {
		t.Errorf("a rejected delta must fall back to a full sync: %+v", res)
	}
	if diff := cmp.Diff(want, chainRules(t, fake, res.Chain)); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
}

func TestEnforcerAdoptsExistingChainOnRestart(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	first := NewEnforcer(fake)
	want := plan(t, Inputs{Containers: cell, Policies: policies})
	res, err := first.Enforce(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	// An older leftover chain (a crash mid-swap of an upstream agent).
	if err := fake.Apply(ctx, iptables.NewTx(iptables.Filter).DeclareChain("vpa--1500000000000000").
		Append("vpa--1500000000000000", "-j ACCEPT").Append("FORWARD", "-j vpa--1500000000000000")); err != nil {
		t.Fatal(err)
	}
	applied := fake.Applied
	second := NewEnforcer(fake) // the agent restarted
	res2, err := second.Enforce(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Chain != res.Chain {
		t.Errorf("restart replaced chain %s with %s", res.Chain, res2.Chain)
	}
	if fake.Applied != applied+1 {
		t.Errorf("writes %d→%d, want one transaction", applied, fake.Applied)
	}
	if got := fake.Chains(iptables.Filter); strings.Contains(strings.Join(got, " "), "vpa--1500000000000000") {
		t.Errorf("stale chain left: %v", got)
	}
	if diff := cmp.Diff(want, chainRules(t, fake, res.Chain)); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
	if got := chainRules(t, fake, "FORWARD"); got[0] != iptables.Rule("-j "+res.Chain) || len(got) != 2 {
		t.Errorf("FORWARD = %q", got)
	}
	// A restart with nothing to change writes nothing.
	applied = fake.Applied
	if _, err := NewEnforcer(fake).Enforce(ctx, want); err != nil || fake.Applied != applied {
		t.Errorf("idle restart wrote: %v, %d→%d", err, applied, fake.Applied)
	}
}

func TestEnforcerMovesJumpBackToTop(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	e := NewEnforcer(fake)
	res, err := e.Enforce(ctx, plan(t, Inputs{Containers: cell, Policies: policies}))
	if err != nil {
		t.Fatal(err)
	}
	if err := fake.Apply(ctx, iptables.NewTx(iptables.Filter).Insert("FORWARD", 1, "-j ACCEPT")); err != nil {
		t.Fatal(err)
	}
	e2 := NewEnforcer(fake)
	if _, err := e2.Enforce(ctx, plan(t, Inputs{Containers: cell, Policies: policies})); err != nil {
		t.Fatal(err)
	}
	got := chainRules(t, fake, "FORWARD")
	if got[0] != iptables.Rule("-j "+res.Chain) || len(got) != 3 {
		t.Errorf("FORWARD = %q", got)
	}
}

func TestEnforcerRereadsAfterAFailedWrite(t *testing.T) {
	ctx := context.Background()
	fake := newFake(t)
	e := NewEnforcer(fake)
	in := Inputs{Containers: cell, Policies: policies}
	if _, err := e.Enforce(ctx, plan(t, in)); err != nil {
		t.Fatal(err)
	}
	fake.FailNext = errors.New("lock timeout")
	in.Policies = in.Policies[1:]
	if _, err := e.Enforce(ctx, plan(t, in)); err == nil {
		t.Fatal("want the error")
	}
	// The failed restore may have committed before it died: the retry
	// reads the table instead of trusting its memory.
	want := plan(t, in)
	res, err := e.Enforce(ctx, want)
	if err != nil || !res.Full {
		t.Fatalf("retry after a failed write: %+v %v (want a full sync)", res, err)
	}
	if diff := cmp.Diff(want, chainRules(t, fake, res.Chain)); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
}
