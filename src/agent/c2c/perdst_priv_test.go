package c2c

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
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

// TestPerDestinationChainsVerdictsOnKernel sends real TCP connections
// through a cell whose policies are in per-destination chains, both
// backends: the allowed port connects, another port and a source without
// policy are rejected by the wrapper-style default deny after the chains,
// and the OK_ LOG line carries upstream's prefix (what iptables-logger
// parses; the chain a rule sits in is not part of the line).
func TestPerDestinationChainsVerdictsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			cell := nfttest.NewCell(t)
			a := cell.AddContainer(t, "10.255.1.2")
			b := cell.AddContainer(t, "10.255.1.3")
			c := cell.AddContainer(t, "10.255.1.4")
			for _, port := range []string{"8080", "9090"} {
				nfttest.Listen(t, b.NS, "10.255.1.3:"+port)
			}
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(t.TempDir(), "iptables.lock")})
			deny := iptables.NewTx(iptables.Filter).DeclareChain("overlay--hb").
				Append("overlay--hb", "-m state --state ESTABLISHED,RELATED -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable").
				Append("FORWARD", "-d 10.255.1.3/32 -j overlay--hb")
			cell.Do(t, func() error { return d.Apply(ctx, deny) })
			token := netnstest.UniqueName("")
			appB := "app-b-" + token
			in := Inputs{
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
			}
			e := NewEnforcer(d)
			enforce := func(in Inputs) {
				t.Helper()
				want := planChains(t, in)
				if len(want.Dst) != 2 {
					t.Fatalf("want two destination chains: %q", want)
				}
				cell.Do(t, func() error { _, err := e.EnforceChains(ctx, want); return err })
			}
			enforce(in)
			for _, tt := range []struct {
				from *nfttest.Container
				to   string
				want bool
			}{
				{a, "10.255.1.3:8080", true},
				{a, "10.255.1.3:9090", false},
				{c, "10.255.1.3:8080", false},
			} {
				if got := nfttest.Connects(t, tt.from.NS, tt.to); got != tt.want {
					t.Errorf("%s → %s: connected %t, want %t", tt.from.IP, tt.to, got, tt.want)
				}
			}
			netnstest.LogAllNetns(t)
			klog := nfttest.OpenKernelLog(t)
			in.Logging = true
			enforce(in)
			if !nfttest.Connects(t, a.NS, "10.255.1.3:8080") {
				t.Fatal("logging on: the allowed connection failed")
			}
			line := klog.WaitFor("OK_0001_"+appB[:min(len(appB), 28-len("OK_0001_"))], 3*time.Second)
			if line == "" || !strings.Contains(line, "SRC=10.255.1.2") || !strings.Contains(line, "DST=10.255.1.3") || !strings.Contains(line, "DPT=8080") {
				t.Errorf("no OK_ log line for the accepted connection: %q", line)
			}
		})
	}
}
