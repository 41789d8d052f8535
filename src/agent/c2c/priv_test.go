package c2c

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// kernelEnforcer is an enforcer on real iptables inside a fresh namespace;
// do runs fn inside it.
func kernelEnforcer(tb testing.TB, fl iptables.Flavor) (e *Enforcer, d *iptables.Driver, do func(func() error)) {
	ns := netnstest.New(tb, "vpa")
	d = iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(tb.TempDir(), "iptables.lock")})
	do = func(fn func() error) {
		tb.Helper()
		if err := ns.Do(fn); err != nil {
			tb.Fatal(err)
		}
	}
	return NewEnforcer(d), d, do
}

// TestEnforcerOnKernel checks that the planned rule text is what
// iptables-save prints back (so deltas delete by exact text), on both
// backends, through create, delta, logging toggle and restart adoption.
func TestEnforcerOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctx := context.Background()
			e, d, do := kernelEnforcer(t, fl)
			read := func(chain string) []iptables.Rule {
				var st *iptables.State
				do(func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
				return st.Rules(chain)
			}
			in := Inputs{Containers: cell, Policies: policies, IngressTag: "FFFF0000", AcceptedUDPLogsPerSec: 100}
			for _, step := range []struct {
				name   string
				change func(*Inputs)
			}{
				{"first sync", func(*Inputs) {}},
				{"logging on", func(in *Inputs) { in.Logging = true }},
				{"delete a policy", func(in *Inputs) { in.Policies = in.Policies[1:] }},
				{"disable policy", func(in *Inputs) { in.DisableNetworkPolicy, in.OverlayNetwork = true, "10.255.0.0/16" }},
				{"container gone", func(in *Inputs) { in.Containers = in.Containers[1:] }},
			} {
				step.change(&in)
				want := plan(t, in)
				var res Result
				do(func() (err error) { res, err = e.Enforce(ctx, want); return err })
				if diff := cmp.Diff(want, read(res.Chain)); diff != "" {
					t.Fatalf("%s: kernel chain (-planned +iptables-save):\n%s", step.name, diff)
				}
				if step.name != "first sync" && res.Full {
					t.Errorf("%s: full sync, want a delta", step.name)
				}
				if fwd := read("FORWARD"); len(fwd) != 1 || fwd[0] != iptables.Rule("-j "+res.Chain) {
					t.Errorf("%s: FORWARD = %q", step.name, fwd)
				}
			}
			// A restarted agent adopts the chain without writing.
			want := plan(t, in)
			restarted := NewEnforcer(d)
			var res Result
			do(func() (err error) { res, err = restarted.Enforce(ctx, want); return err })
			if res.Changed || res.Chain != e.Chain() {
				t.Errorf("restart: %+v (chain was %s)", res, e.Chain())
			}
		})
	}
}

// BenchmarkEnforce measures one cycle's iptables work on real iptables in
// a namespace: one policy added or removed on a cell already holding n c2c
// rules (alternating, so the chain size stays n±1), and a full first sync
// of n rules.
func BenchmarkEnforce(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, fl := range netnstest.IPTablesFlavors(b) {
		for _, n := range []int{1000, 10000} {
			// n/40 destination containers with 40 inbound policies each,
			// plus one MARK rule per container.
			in := bigInputs(n/41, 40)
			base := plan(b, in)
			extra := in
			extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
			changed := plan(b, extra)
			b.Run(fmt.Sprintf("%s/one-policy/rules=%d", fl, len(base)), func(b *testing.B) {
				ctx := context.Background()
				e, _, do := kernelEnforcer(b, fl)
				do(func() error { _, err := e.Enforce(ctx, base); return err })
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					want := changed
					if i%2 == 1 {
						want = base
					}
					do(func() error {
						res, err := e.Enforce(ctx, want)
						if err == nil && (res.Full || res.Added+res.Removed != 1) {
							err = fmt.Errorf("not a one-rule delta: %+v", res)
						}
						return err
					})
				}
			})
			b.Run(fmt.Sprintf("%s/first-sync/rules=%d", fl, len(base)), func(b *testing.B) {
				ctx := context.Background()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					e, _, do := kernelEnforcer(b, fl)
					b.StartTimer()
					do(func() error { _, err := e.Enforce(ctx, base); return err })
				}
			})
		}
	}
}
