package c2c

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"syscall"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// overlayDeny installs what cni-wrapper-plugin's overlay--<handle> chains
// do for the destinations (the default deny between containers), so the
// c2c chain's accepts decide.
func overlayDeny(tb testing.TB, k nft.Driver, cell *nfttest.Cell, ctrs ...*nfttest.Container) {
	tb.Helper()
	objects := &nft.Ruleset{}
	sk := nft.Skeleton()
	dispatch := *sk.Set(nft.MapOverlay)
	for i, c := range ctrs {
		chain := fmt.Sprintf("overlay--h%d", i)
		objects.Chains = append(objects.Chains, &nft.Chain{Name: chain, Rules: []string{"ct state established,related accept", nft.Reject}})
		dispatch.Elements = append(dispatch.Elements, nft.Element{Key: nft.Addr(c.IP), Value: nft.Jump(chain)})
	}
	cell.Do(tb, func() error {
		tx := k.NewTransaction()
		nft.AddSkeleton(tx)
		nft.Put(tx, objects)
		nft.AddElements(tx, &nft.Ruleset{Sets: []*nft.Set{&dispatch}})
		return k.Run(context.Background(), tx)
	})
}

// TestNFTVerdictsOnKernel loads the c2c plan into a cell namespace with the
// real nft and checks real TCP connections: an allowed port, a denied one,
// a source without policy, a source on another cell whose packets arrive
// marked (as VXLAN GBP delivers them; emulated by a prerouting mark), a
// policy removed by a one-element delta, and the OK_ log line.
func TestNFTVerdictsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	cell := nfttest.NewCell(t)
	a := cell.AddContainer(t, "10.255.1.2")
	b := cell.AddContainer(t, "10.255.1.3")
	c := cell.AddContainer(t, "10.255.1.4")
	r := cell.AddContainer(t, "10.255.9.9") // stands for a container on another cell
	var k *nft.Kernel
	cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	overlayDeny(t, k, cell, a, b, c)
	cell.NS.Run(t, "nft", "add table inet gbp-emulation")
	cell.NS.Run(t, "nft", "add chain inet gbp-emulation pre { type filter hook prerouting priority mangle - 1 ; }")
	cell.NS.Run(t, "nft", "add rule inet gbp-emulation pre iifname "+r.HostVeth+" meta mark set 0x5")
	for _, port := range []string{"8080", "9090"} {
		nfttest.Listen(t, b.NS, "10.255.1.3:"+port)
	}

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
			pol("app-r", "0005", appB, "0002", "tcp", 8000, 8100),
			pol(appB, "0002", "app-c", "0003", "udp", 53, 53),
		},
		AcceptedUDPLogsPerSec: 100,
	}
	e := NewNFTEnforcer(k)
	enforce := func(in Inputs) nft.Result {
		t.Helper()
		rs, err := PlanNFT(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		var res nft.Result
		cell.Do(t, func() (err error) { res, err = e.Enforce(ctx, rs, nil); return err })
		return res
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
		{r, "10.255.1.3:8080", true},
		{r, "10.255.1.3:9090", false},
	} {
		if got := nfttest.Connects(t, tt.from.NS, tt.to); got != tt.want {
			t.Errorf("%s → %s: connected %t, want %t", tt.from.IP, tt.to, got, tt.want)
		}
	}

	netnstest.LogAllNetns(t)
	klog := nfttest.OpenKernelLog(t)
	in.Logging = true
	if res := enforce(in); res.Full {
		t.Errorf("logging on: full resync, want a delta")
	}
	if !nfttest.Connects(t, a.NS, "10.255.1.3:8080") {
		t.Fatal("a → b:8080 denied with logging on")
	}
	if line := klog.WaitFor("OK_0001_"+appB+" ", 5*time.Second); line == "" || !strings.Contains(line, "DST=10.255.1.3") {
		t.Errorf("no OK_ log line for a → b (got %q)", line)
	}
	// r's policy is a port range: accepted by the second lookup, logged the same way.
	if !nfttest.Connects(t, r.NS, "10.255.1.3:8080") {
		t.Fatal("r → b:8080 denied with logging on")
	}
	if line := klog.WaitFor("OK_0005_"+appB+" ", 5*time.Second); line == "" || !strings.Contains(line, "DST=10.255.1.3") {
		t.Errorf("no OK_ log line for r → b (got %q)", line)
	}

	in.Policies = in.Policies[1:]
	res := enforce(in)
	if res.Full || res.ElementsDeleted < 1 || res.ChainsWritten != 0 {
		t.Errorf("removing a policy: %+v", res)
	}
	if nfttest.Connects(t, a.NS, "10.255.1.3:8080") {
		t.Error("a → b:8080 still connects after its policy was removed")
	}
	if !nfttest.Connects(t, r.NS, "10.255.1.3:8080") {
		t.Error("r → b:8080 denied after an unrelated policy was removed")
	}
}

// TestNFTCoexistsWithIPTables runs the c2c verdicts with iptables rules of
// either backend in the same namespace's filter FORWARD chain (Garden's
// and the kernel's tables on a cell): an ACCEPT there does not undo
// netman's reject, and a DROP there is not undone by netman's accept.
// Each base chain of each table decides on its own; a packet passes only
// if all of them let it.
func TestNFTCoexistsWithIPTables(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ctx := context.Background()
			cell := nfttest.NewCell(t)
			a := cell.AddContainer(t, "10.255.1.2")
			b := cell.AddContainer(t, "10.255.1.3")
			var k *nft.Kernel
			cell.Do(t, func() (err error) { k, err = nft.New(); return err })
			overlayDeny(t, k, cell, a, b)
			for _, port := range []string{"8080", "9090"} {
				nfttest.Listen(t, b.NS, "10.255.1.3:"+port)
			}
			rs, err := PlanNFT(Inputs{
				Containers: []Container{{Handle: "ha", IP: "10.255.1.2", AppID: "app-a"}, {Handle: "hb", IP: "10.255.1.3", AppID: "app-b"}},
				Policies:   []Policy{pol("app-a", "0001", "app-b", "0002", "tcp", 8080, 8080)},
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cell.Do(t, func() error { _, err := NewNFTEnforcer(k).Enforce(ctx, rs, nil); return err })
			ipt := "iptables-" + string(fl)
			cell.NS.Run(t, ipt, "-w", "-P", "FORWARD", "DROP")
			cell.NS.Run(t, ipt, "-w", "-A", "FORWARD", "-j", "ACCEPT")
			if !nfttest.Connects(t, a.NS, "10.255.1.3:8080") {
				t.Error("allowed port denied with iptables accepting everything")
			}
			if nfttest.Connects(t, a.NS, "10.255.1.3:9090") {
				t.Error("iptables' ACCEPT undid netman's reject")
			}
			cell.NS.Run(t, ipt, "-w", "-I", "FORWARD", "-p", "tcp", "--dport", "8080", "-j", "DROP")
			if nfttest.Connects(t, a.NS, "10.255.1.3:8080") {
				t.Error("netman's accept undid iptables' DROP")
			}
		})
	}
}

// recorder is a Driver that keeps the last transaction it ran.
type recorder struct {
	nft.Driver
	last *knftables.Transaction
}

func (r *recorder) Run(ctx context.Context, tx *knftables.Transaction) error {
	r.last = tx
	return r.Driver.Run(ctx, tx)
}

// TestNFTOneChangeTouchesOneElementOn50k loads 50,000 policies into a
// namespace with the real nft, then adds and removes one: each change must
// be one transaction of one element operation, and the kernel's set must
// then hold exactly the plan. (nft 1.0.6's `nft monitor` prints elements of
// concatenated interval sets garbled, so the transaction is what is
// checked, and the kernel's state after it.)
func TestNFTOneChangeTouchesOneElementOn50k(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	ns := netnstest.New(t, "c2c")
	do := func(fn func() error) {
		t.Helper()
		if err := ns.Do(fn); err != nil {
			t.Fatal(err)
		}
	}
	var k *nft.Kernel
	do(func() (err error) { k, err = nft.New(); return err })
	base, changed := fiftyK(t, bigInputs(1220, 41))
	rec := &recorder{Driver: k}
	e := NewNFTEnforcer(rec)
	do(func() error { _, err := e.Enforce(ctx, base, nil); return err })
	for _, tt := range []struct {
		want *nft.Ruleset
		op   string
	}{
		{changed, "add element inet netman c2c-policies { 0x00000001 . 10.255.1.3 . udp . 9999 }\n"},
		{base, "delete element inet netman c2c-policies { 0x00000001 . 10.255.1.3 . udp . 9999 }\n"},
	} {
		var res nft.Result
		do(func() (err error) { res, err = e.Enforce(ctx, tt.want, nil); return err })
		if res.Full || res.ElementsAdded+res.ElementsDeleted != 1 || res.Rules != 0 {
			t.Errorf("one policy: %+v", res)
		}
		if got := rec.last.String(); got != tt.op {
			t.Errorf("transaction sent to nft:\n%s\nwant:\n%s", got, tt.op)
		}
		var st *nft.State
		do(func() (err error) { st, err = k.Read(ctx); return err })
		got, want := st.Sets[NFTPolicies].Elements, nft.StateOf(tt.want).Sets[NFTPolicies].Elements
		if len(got) != len(want) || !maps.Equal(got, want) {
			t.Errorf("kernel set holds %d elements, plan %d (or they differ)", len(got), len(want))
			n := 0
			for k, v := range got {
				if w, ok := want[k]; (!ok || w != v) && n < 5 {
					t.Logf("kernel only: %q=%q", k, v)
					n++
				}
			}
			n = 0
			for k, v := range want {
				if g, ok := got[k]; (!ok || g != v) && n < 5 {
					t.Logf("plan only: %q=%q", k, v)
					n++
				}
			}
		}
	}
}

// fiftyK plans bigInputs and the same plus one policy, checking the size.
func fiftyK(tb testing.TB, in Inputs) (base, changed *nft.Ruleset) {
	tb.Helper()
	base, err := PlanNFT(in, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if n := len(base.Set(NFTPolicies).Elements); n < 50000 {
		tb.Fatalf("only %d policy elements", n)
	}
	changed, err = PlanNFT(withExtra(in), nil)
	if err != nil {
		tb.Fatal(err)
	}
	return base, changed
}

// withExtra is in plus one udp policy: the change the benchmarks make.
func withExtra(in Inputs) Inputs {
	extra := in
	extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
	return extra
}

// TestNFTGoldensLoad checks every c2c golden file with `nft -c -f`.
func TestNFTGoldensLoad(t *testing.T) { nfttest.CheckFiles(t, "testdata/nft-*.golden") }

// childCPU is the user+system CPU time of the process's waited-for
// children (the nft and iptables-restore runs), which the machine's load
// does not inflate as it does wall time.
func childCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// selfCPU is the user+system CPU time of this process, all its threads.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingDriver counts every call that reaches the kernel.
type countingDriver struct {
	nft.Driver
	calls int
}

func (d *countingDriver) Run(ctx context.Context, tx *knftables.Transaction) error {
	d.calls++
	return d.Driver.Run(ctx, tx)
}

func (d *countingDriver) Read(ctx context.Context) (*nft.State, error) {
	d.calls++
	return d.Driver.Read(ctx)
}

func (d *countingDriver) ChainNames(ctx context.Context) (map[string]bool, error) {
	d.calls++
	return d.Driver.ChainNames(ctx)
}

func (d *countingDriver) ReadSet(ctx context.Context, name string, isMap bool) (*nft.SetState, error) {
	d.calls++
	return d.Driver.ReadSet(ctx, name, isMap)
}

// alternate times b.N calls of change (given the iteration: even ones add
// a policy, odd ones remove it) and reports their wall-time percentiles,
// the CPU time of the processes they ran, per call, as cpuMetric, and the
// benchmark process's own CPU time per call (the diff, the netlink batch,
// garbage collection) as cpu-ms/op.
func alternate(b *testing.B, cpuMetric string, change func(i int)) {
	var lat benchlat.Latencies
	cpu0, self0 := childCPU(), selfCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		change(i)
		lat.Add(time.Since(t0))
	}
	b.StopTimer()
	lat.Report(b)
	b.ReportMetric(float64(childCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), cpuMetric)
	b.ReportMetric(float64(selfCPU()-self0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkNFTEnforce50k measures the nftables backend at 50,000 c2c
// policies (1,220 destination containers × 41 policies, 1,220 sources):
// one policy added or removed (alternating) along the agent's whole local
// path (NFTPlanner plan, Enforce of its Delta, the netlink batch), the
// same change diffed whole by the enforcer (a Ruleset without a Delta),
// that one-element transaction alone, a restart adopting the loaded
// table, the idle cycle (nothing changed), and the first full sync.
// Reported: wall-time p50/p99 per call, the benchmark process's own CPU
// time per call (cpu-ms/op, and split into plan and enforce where both
// run) and the nft processes' CPU time per call.
func BenchmarkNFTEnforce50k(b *testing.B) {
	netnstest.RequireRoot(b)
	ctx := context.Background()
	base, changed := fiftyK(b, bigInputs(1220, 41))
	rules, elements := base.Counts()
	b.Logf("plan: %d rules, %d elements", rules, elements)
	// One policy added or removed (alternately) along the agent's whole
	// local path: the cycle's NFTPlanner turns the inputs (policies in
	// hand) into the Ruleset and its Delta, the enforcer writes the one
	// element over netlink. Reported: p50/p99 of the whole, of the plan
	// and of the enforce, and CPU time per op of each (getrusage of the
	// whole process, garbage collection included).
	b.Run("one-policy", func(b *testing.B) { benchOnePolicy(b, bigInputs(1220, 41), 1) })
	// The same change handed to the enforcer without a Delta (a Ruleset
	// planned from scratch): the enforcer compares the whole plan with its
	// memory, as every change did before the NFTPlanner.
	b.Run("one-policy-whole-diff", func(b *testing.B) {
		ns := netnstest.New(b, "c2cw")
		var e *nft.Enforcer
		do := func(fn func() error) {
			if err := ns.Do(fn); err != nil {
				b.Fatal(err)
			}
		}
		do(func() (err error) { k, err := nft.New(); e = NewNFTEnforcer(k); return err })
		do(func() error { _, err := e.Enforce(ctx, base, nil); return err })
		alternate(b, "nft-cpu-ms/op", func(i int) {
			want := changed
			if i%2 == 1 {
				want = base
			}
			do(func() error {
				res, err := e.Enforce(ctx, want, nil)
				if err == nil && (res.Full || res.Incremental || res.ElementsAdded+res.ElementsDeleted != 1) {
					err = fmt.Errorf("not a one-element whole diff: %+v", res)
				}
				return err
			})
		})
	})
	// The transaction alone: one element added or deleted by nft, without
	// the plan's diff in the agent, into the 50,000-element set and into
	// an empty one (what the transaction costs whatever the table holds).
	for _, tc := range []struct {
		name string
		rs   *nft.Ruleset
	}{{"one-element-transaction/elements=50k", base}, {"one-element-transaction/elements=0", &nft.Ruleset{Sets: []*nft.Set{base.Set(NFTPolicies).Clone(false)}}}} {
		b.Run(tc.name, func(b *testing.B) {
			ns := netnstest.New(b, "c2ct")
			var k *nft.Kernel
			do := func(fn func() error) {
				if err := ns.Do(fn); err != nil {
					b.Fatal(err)
				}
			}
			do(func() (err error) { k, err = nft.New(); return err })
			do(func() error { _, err := NewNFTEnforcer(k).Enforce(ctx, tc.rs, nil); return err })
			el := &knftables.Element{Set: NFTPolicies, Key: []string{"0x00000001", "10.255.1.3", "udp", "9999"}}
			alternate(b, "nft-cpu-ms/op", func(i int) {
				do(func() error {
					tx := k.NewTransaction()
					if i%2 == 0 {
						tx.Add(el)
					} else {
						tx.Delete(el)
					}
					return k.Run(ctx, tx)
				})
			})
		})
	}
	// A restarted agent: a new enforcer reads the loaded table, diffs and
	// finds nothing to write.
	b.Run("restart-adopt", func(b *testing.B) {
		ns := netnstest.New(b, "c2cr")
		var k *nft.Kernel
		do := func(fn func() error) {
			if err := ns.Do(fn); err != nil {
				b.Fatal(err)
			}
		}
		do(func() (err error) { k, err = nft.New(); return err })
		do(func() error { _, err := NewNFTEnforcer(k).Enforce(ctx, base, nil); return err })
		alternate(b, "nft-cpu-ms/op", func(int) {
			do(func() error {
				res, err := NewNFTEnforcer(k).Enforce(ctx, base, nil)
				if err == nil && (!res.Full || res.Changed()) {
					err = fmt.Errorf("restart wrote: %+v", res)
				}
				return err
			})
		})
	})
	// The agent's cycle when nothing changed (what every poll costs on a
	// quiet cell): the NFTPlanner's plan, then Enforce against the
	// enforcer's memory. It must neither write to nor read from the kernel.
	// Reported: wall time per cycle, split into the plan and the enforce,
	// and the process's CPU time per cycle (garbage collection included).
	b.Run("idle-cycle", func(b *testing.B) {
		ns := netnstest.New(b, "c2ci")
		in := bigInputs(1220, 41)
		var cd *countingDriver
		var e *nft.Enforcer
		do := func(fn func() error) {
			if err := ns.Do(fn); err != nil {
				b.Fatal(err)
			}
		}
		do(func() error { k, err := nft.New(); cd = &countingDriver{Driver: k}; e = NewNFTEnforcer(cd); return err })
		p := NewNFTPlanner()
		first, err := p.Plan(in, nil)
		if err != nil {
			b.Fatal(err)
		}
		do(func() error { _, err := e.Enforce(ctx, first, nil); return err })
		cd.calls = 0
		var planT time.Duration
		cpu0 := selfCPU()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			t0 := time.Now()
			rs, err := p.Plan(in, nil)
			if err != nil {
				b.Fatal(err)
			}
			planT += time.Since(t0)
			res, err := e.Enforce(ctx, rs, nil)
			if err != nil {
				b.Fatal(err)
			}
			if res.Full || !res.Incremental || res.Changed() {
				b.Fatalf("idle cycle changed something: %+v", res)
			}
		}
		b.StopTimer()
		if cd.calls != 0 {
			b.Fatalf("idle cycles called the kernel %d times", cd.calls)
		}
		b.ReportMetric(float64(planT)/float64(time.Millisecond)/float64(b.N), "plan-ms/op")
		b.ReportMetric(float64(selfCPU()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	})
	// The first sync of a new agent: a table that does not exist, the
	// whole plan written.
	b.Run("first-sync", func(b *testing.B) { benchFirstSync(b, base) })
}

// benchFirstSync is the first sync of a new agent: a table that does not
// exist, the whole of rs written. Reported: wall time, the nft
// processes' CPU and the benchmark's own.
func benchFirstSync(b *testing.B, rs *nft.Ruleset) {
	ctx := context.Background()
	var lat benchlat.Latencies
	var cpu, self time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		ns := netnstest.New(b, "c2cf")
		var e *nft.Enforcer
		if err := ns.Do(func() error { k, err := nft.New(); e = NewNFTEnforcer(k); return err }); err != nil {
			b.Fatal(err)
		}
		cpu0, self0 := childCPU(), selfCPU()
		b.StartTimer()
		t0 := time.Now()
		if err := ns.Do(func() error { _, err := e.Enforce(ctx, rs, nil); return err }); err != nil {
			b.Fatal(err)
		}
		lat.Add(time.Since(t0))
		cpu += childCPU() - cpu0
		self += selfCPU() - self0
	}
	lat.Report(b)
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(b.N), "nft-cpu-ms/op")
	b.ReportMetric(float64(self)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// benchOnePolicy is BenchmarkNFTEnforce50k/one-policy on in: one policy
// added or removed (alternately) along the agent's whole local path, each
// change writing elems elements.
func benchOnePolicy(b *testing.B, in Inputs, elems int) {
	ctx := context.Background()
	ns := netnstest.New(b, "c2cb")
	var e *nft.Enforcer
	do := func(fn func() error) {
		if err := ns.Do(fn); err != nil {
			b.Fatal(err)
		}
	}
	extra := withExtra(in)
	p := NewNFTPlanner()
	first, err := p.Plan(in, nil)
	if err != nil {
		b.Fatal(err)
	}
	do(func() (err error) { k, err := nft.New(); e = NewNFTEnforcer(k); return err })
	do(func() error { _, err := e.Enforce(ctx, first, nil); return err })
	var whole, plans, enforces []time.Duration
	var planCPU, enforceCPU time.Duration
	cpu0 := selfCPU()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := extra
		if i%2 == 1 {
			want = in
		}
		c0, t0 := selfCPU(), time.Now()
		rs, err := p.Plan(want, nil)
		if err != nil {
			b.Fatal(err)
		}
		c1, t1 := selfCPU(), time.Now()
		do(func() error {
			res, err := e.Enforce(ctx, rs, nil)
			if err == nil && (!res.Incremental || res.ElementsAdded+res.ElementsDeleted != elems) {
				err = fmt.Errorf("not a %d-element delta: %+v", elems, res)
			}
			return err
		})
		c2, t2 := selfCPU(), time.Now()
		whole, plans, enforces = append(whole, t2.Sub(t0)), append(plans, t1.Sub(t0)), append(enforces, t2.Sub(t1))
		planCPU += c1 - c0
		enforceCPU += c2 - c1
	}
	b.StopTimer()
	benchlat.Report(b, "", whole)
	benchlat.Report(b, "plan", plans)
	benchlat.Report(b, "enforce", enforces)
	perOp := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(b.N) }
	b.ReportMetric(perOp(selfCPU()-cpu0), "cpu-ms/op")
	b.ReportMetric(perOp(planCPU), "plan-cpu-ms/op")
	b.ReportMetric(perOp(enforceCPU), "enforce-cpu-ms/op")
}

// BenchmarkNFTEnforce50kDualStack is BenchmarkNFTEnforce50k/one-policy on
// a dual-stack cell: the same 50,000 policies, each also in the ip6 sets
// (100,040 policy elements and 2,440 tags), one policy added or removed
// writing its element and its IPv6 twin in one netlink batch.
func BenchmarkNFTEnforce50kDualStack(b *testing.B) {
	netnstest.RequireRoot(b)
	in := dual(bigInputs(1220, 41))
	rs, err := PlanNFT(in, nil)
	if err != nil {
		b.Fatal(err)
	}
	rules, elements := rs.Counts()
	b.Logf("plan: %d rules, %d elements", rules, elements)
	b.Run("one-policy", func(b *testing.B) { benchOnePolicy(b, in, 2) })
	b.Run("first-sync", func(b *testing.B) { benchFirstSync(b, rs) })
}

// BenchmarkIPTablesEnforce50k is BenchmarkEnforce at the same 50,000
// policies, for comparison with BenchmarkNFTEnforce50k: the existing
// enforcer's one-rule delta on iptables-legacy and iptables-nft.
func BenchmarkIPTablesEnforce50k(b *testing.B) {
	netnstest.RequireRoot(b)
	in := bigInputs(1220, 41)
	base := plan(b, in)
	extra := in
	extra.Policies = append(append([]Policy(nil), in.Policies...), pol("app-0000", "0001", "app-0001", "0002", "udp", 9999, 9999))
	changed := plan(b, extra)
	for _, fl := range netnstest.IPTablesFlavors(b) {
		b.Run(fmt.Sprintf("%s/one-policy/rules=%d", fl, len(base)), func(b *testing.B) {
			ctx := context.Background()
			e, _, do := kernelEnforcer(b, fl)
			do(func() error { _, err := e.Enforce(ctx, base); return err })
			alternate(b, "restore-cpu-ms/op", func(i int) {
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
			})
		})
		b.Run(fmt.Sprintf("%s/first-sync/rules=%d", fl, len(base)), func(b *testing.B) {
			ctx := context.Background()
			var lat benchlat.Latencies
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				e, _, do := kernelEnforcer(b, fl)
				b.StartTimer()
				t0 := time.Now()
				do(func() error { _, err := e.Enforce(ctx, base); return err })
				lat.Add(time.Since(t0))
			}
			lat.Report(b)
		})
	}
}
