package c2c

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestPerDestinationChainsOnKernel checks per-destination chains on real
// iptables, both backends: what iptables-save prints back is the plan (so
// deltas delete by exact text), through create, delta, a new and a gone
// destination, drift repair, and switching the property off and on.
func TestPerDestinationChainsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctx := context.Background()
			e, d, do := kernelEnforcer(t, fl)
			read := func(main string) Chains {
				var st *iptables.State
				do(func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
				c := Chains{Main: st.Rules(main), Dst: map[string][]iptables.Rule{}}
				for _, name := range st.ChainNames(IsDstChain) {
					c.Dst[name] = st.Rules(name)
				}
				return c
			}
			in := Inputs{Containers: cell, Policies: policies, IngressTag: "FFFF0000", AcceptedUDPLogsPerSec: 100}
			for _, step := range []struct {
				name   string
				change func(*Inputs)
			}{
				{"first sync", func(*Inputs) {}},
				{"logging on", func(in *Inputs) { in.Logging = true }},
				{"delete a policy", func(in *Inputs) { in.Policies = in.Policies[1:] }},
				{"new destination", func(in *Inputs) {
					in.Containers = append(in.Containers, Container{Handle: "h-e1", IP: "10.255.1.20", AppID: "app-e"})
					in.Policies = append(in.Policies, pol("app-a", "0001", "app-e", "0005", "udp", 53, 53))
				}},
				{"destination gone", func(in *Inputs) { in.Containers = in.Containers[1:] }},
			} {
				step.change(&in)
				want := planChains(t, in)
				var res Result
				do(func() (err error) { res, err = e.EnforceChains(ctx, want); return err })
				if got := read(res.Chain); !equalChains(want, got) {
					t.Fatalf("%s: kernel chains differ from the plan:\nwant %q\ngot  %q", step.name, want, got)
				}
				if step.name != "first sync" && res.Full {
					t.Errorf("%s: full sync, want a delta", step.name)
				}
			}
			want := planChains(t, in)
			// Drift: a destination chain flushed behind the agent's back.
			do(func() error { return d.Apply(ctx, iptables.NewTx(iptables.Filter).Flush("vpa-dst-10.255.1.3")) })
			e.Invalidate()
			var res Result
			do(func() (err error) { res, err = e.EnforceChains(ctx, want); return err })
			if got := read(res.Chain); !res.Full || !equalChains(want, got) {
				t.Fatalf("drift repair: %+v\nwant %q\ngot  %q", res, want, got)
			}
			// Off: one chain, no destination chains left; on again.
			flat := plan(t, in)
			do(func() (err error) { res, err = NewEnforcer(d).Enforce(ctx, flat); return err })
			if got := read(res.Chain); !equalChains(Chains{Main: flat}, got) {
				t.Fatalf("switched off: %q", got)
			}
			do(func() (err error) { res, err = NewEnforcer(d).EnforceChains(ctx, want); return err })
			if got := read(res.Chain); !equalChains(want, got) {
				t.Fatalf("switched on: %q", got)
			}
		})
	}
}

// BenchmarkIPTablesChangeCost measures one policy change (a udp policy
// added, then removed, alternately) through the enforcer on real iptables,
// both backends, at 10,000 and 50,000 policies, with upstream's single
// vpa-- chain and with per-destination chains; and the first sync of each
// layout. Reported: wall-time p50/p99 and iptables-restore's CPU time per
// change (restore-cpu-ms/op).
func BenchmarkIPTablesChangeCost(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, size := range []struct {
		name          string
		dsts, perDest int
	}{{"10k", 244, 41}, {"50k", 1220, 41}} {
		in := bigInputs(size.dsts, size.perDest)
		extra := in
		extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
		for _, layout := range []struct {
			name   string
			perDst bool
		}{{"single-chain", false}, {"per-destination", true}} {
			base, err := PlanChains(in, nil, layout.perDst)
			if err != nil {
				b.Fatal(err)
			}
			changed, err := PlanChains(extra, nil, layout.perDst)
			if err != nil {
				b.Fatal(err)
			}
			for _, fl := range netnstest.IPTablesFlavors(b) {
				b.Run(fmt.Sprintf("%s/%s/policies=%s/one-policy", fl, layout.name, size.name), func(b *testing.B) {
					ctx := context.Background()
					e, _, do := kernelEnforcer(b, fl)
					do(func() error { _, err := e.EnforceChains(ctx, base); return err })
					alternate(b, "restore-cpu-ms/op", func(i int) {
						want := changed
						if i%2 == 1 {
							want = base
						}
						do(func() error {
							res, err := e.EnforceChains(ctx, want)
							if err == nil && (res.Full || res.Added+res.Removed != 1) {
								err = fmt.Errorf("not a one-rule delta: %+v", res)
							}
							return err
						})
					})
					b.ReportMetric(float64(base.Size()), "rules")
				})
				b.Run(fmt.Sprintf("%s/%s/policies=%s/first-sync", fl, layout.name, size.name), func(b *testing.B) {
					ctx := context.Background()
					var lat benchlat.Latencies
					for i := 0; i < b.N; i++ {
						b.StopTimer()
						e, _, do := kernelEnforcer(b, fl)
						b.StartTimer()
						t0 := time.Now()
						do(func() error { _, err := e.EnforceChains(ctx, base); return err })
						lat.Add(time.Since(t0))
					}
					lat.Report(b)
				})
			}
		}
	}
}
