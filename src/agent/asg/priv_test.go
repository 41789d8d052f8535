package asg

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// backend is what the scenario needs from iptables: the fake and the real
// driver in a namespace both offer it.
type backend interface {
	Driver
	applier
	UpdateTables(ctx context.Context, tables []string, plan iptables.MultiPlanFunc) (map[string]*iptables.State, error)
	Save(ctx context.Context, table string) (*iptables.State, error)
}

// nsBackend runs a real driver inside a namespace.
type nsBackend struct {
	ns *netnstest.NS
	d  *iptables.Driver
}

func (n *nsBackend) Update(ctx context.Context, table string, plan iptables.PlanFunc) (st *iptables.State, err error) {
	if e := n.ns.Do(func() error { st, err = n.d.Update(ctx, table, plan); return nil }); e != nil {
		return nil, e
	}
	return st, err
}

func (n *nsBackend) UpdateTables(ctx context.Context, tables []string, plan iptables.MultiPlanFunc) (st map[string]*iptables.State, err error) {
	if e := n.ns.Do(func() error { st, err = n.d.UpdateTables(ctx, tables, plan); return nil }); e != nil {
		return nil, e
	}
	return st, err
}

func (n *nsBackend) Apply(ctx context.Context, txs ...*iptables.Tx) error {
	return n.ns.Do(func() error { return n.d.Apply(ctx, txs...) })
}

func (n *nsBackend) Save(ctx context.Context, table string) (st *iptables.State, err error) {
	if e := n.ns.Do(func() error { st, err = n.d.Save(ctx, table); return nil }); e != nil {
		return nil, e
	}
	return st, err
}

func newNSBackend(t testing.TB, f iptables.Flavor) *nsBackend {
	ns := netnstest.New(t, "asg")
	return &nsBackend{ns: ns, d: iptables.New(iptables.Config{Flavor: f, LockFile: t.TempDir() + "/iptables.lock"})}
}

// checkpoint is the filter table at one step of the scenario.
type checkpoint struct{ name, table string }

// scenario drives a Syncer through a container's life on b and returns the
// filter table after each step. It fails t on unexpected writes.
func scenario(t *testing.T, b backend) []checkpoint {
	ctx := context.Background()
	var out []checkpoint
	save := func(name string) *iptables.State {
		t.Helper()
		st, err := b.Save(ctx, iptables.Filter)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, checkpoint{name, dump(st)})
		return st
	}
	cfg := fullConfig()
	wcfg := wrapperConfig(true, cniwrapper.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100})
	cs := []Container{cApp, cStaging, cOther}
	for _, c := range cs {
		addContainer(t, b, wcfg, c)
	}
	// An upstream agent's candidate left next to cOther's chain.
	otherChain, otherParent := rules.ASGChain(hOther), rules.Prefix("netout", hOther)
	if err := b.Apply(ctx, iptables.NewTx(iptables.Filter).DeclareChain(otherChain).DeclareChain("c"+otherChain).
		Append(otherChain, rules.Reject()).Append("c"+otherChain, rules.Reject()).
		Insert(otherParent, 1, rules.Jump(otherChain), rules.Jump("c"+otherChain))); err != nil {
		t.Fatal(err)
	}
	source := &fakeSource{groups: []policy.SecurityGroup{sgDefaultRunning, sgDefaultStaging, sgSpaceRunning, sgDuplicate, sgSpaceStaging, sgDropped}}
	rec := &recorder{Driver: b}
	s, err := New(logtest.New(t), rec, source, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	syncAll := func(s *Syncer, cs []Container) {
		t.Helper()
		if _, err := s.SyncAll(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}

	syncAll(s, cs)
	st := save("first sync")
	if st.Has("c" + otherChain) {
		t.Error("candidate chain left")
	}
	_, w := rec.counts()
	syncAll(s, cs)
	if _, w2 := rec.counts(); w2 != w {
		t.Errorf("unchanged poll wrote %d transactions: kernel text differs from rendered?\n%q", w2-w, rec.lastWrite())
	}

	// Rules as rendered delete by spec: ICMP any reads back as "any".
	appChain := rules.ASGChain(hApp)
	anyRule := iptables.Rule("-p icmp -m iprange --dst-range 10.1.0.0-10.1.255.255 -m icmp --icmp-type any -g " + rules.Postfix(rules.Prefix("netout", hApp), "log"))
	if !st.Contains(appChain, anyRule) {
		t.Fatalf("%s lacks %q:\n%s", appChain, anyRule, dump(st))
	}
	if err := b.Apply(ctx, iptables.NewTx(iptables.Filter).Delete(appChain, anyRule)); err != nil {
		t.Fatalf("deleting ICMP any rule by spec: %v", err)
	}
	syncAll(s, cs) // repairs the drift
	if diff := cmp.Diff(out[0].table, dump(mustSave(t, b))); diff != "" {
		t.Errorf("drift not repaired (-want +got):\n%s", diff)
	}

	// Change the space's group: one rule less, one more; cOther unchanged.
	changed := sgSpaceRunning
	changed.Rules = strings.Replace(changed.Rules, `{"protocol":"icmp","destination":"10.2.0.2","type":3,"code":-1},`, "", 1)
	changed.Rules = strings.Replace(changed.Rules, `"ports":"1000-2000,bad, 3000 - 3100"`, `"ports":"1000-2000,bad, 3000 - 3100, 5432"`, 1)
	source.set(sgDefaultRunning, sgDefaultStaging, changed, sgDuplicate, sgSpaceStaging, sgDropped)
	_, w = rec.counts()
	syncAll(s, cs)
	if _, w2 := rec.counts(); w2-w != 1 {
		t.Errorf("ASG change took %d transactions, want 1", w2-w)
	}
	for _, l := range rec.lastWrite() {
		if !strings.Contains(l, " "+appChain+" ") {
			t.Errorf("change touches more than %s: %q", appChain, l)
		}
	}
	save("asg changed")

	// disable_container_network_policy: every asg chain starts with the
	// overlay accept.
	cfg2 := cfg
	cfg2.DisableContainerNetworkPolicy, cfg2.OverlayNetwork = true, "10.255.0.0/16"
	s2, err := New(logtest.New(t), rec, source, cfg2, nil)
	if err != nil {
		t.Fatal(err)
	}
	syncAll(s2, cs)
	save("container network policy disabled")

	// The wrapper deletes cApp, then asks for the orphan cleanup.
	del := &cniwrapper.DelPlanner{Handle: hApp, VTEPName: "silk-vtep"}
	if _, err := b.UpdateTables(ctx, cniwrapper.DelTables, del.Plan); err != nil {
		t.Fatal(err)
	}
	if err := s2.CleanupContainer(ctx, hApp); err != nil {
		t.Fatal(err)
	}
	save("app deleted")

	// The others go without the cleanup call: the next poll removes them.
	for _, c := range cs[1:] {
		del := &cniwrapper.DelPlanner{Handle: c.Handle, VTEPName: "silk-vtep"}
		if _, err := b.UpdateTables(ctx, cniwrapper.DelTables, del.Plan); err != nil {
			t.Fatal(err)
		}
	}
	syncAll(s2, nil)
	st = save("all deleted")
	if n := len(st.ChainNames(func(c string) bool { return !st.Chain(c).Builtin() })); n != 0 {
		t.Errorf("%d chains left:\n%s", n, dump(st))
	}
	return out
}

func mustSave(t *testing.T, b backend) *iptables.State {
	t.Helper()
	st, err := b.Save(context.Background(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func render(cps []checkpoint) string {
	var b strings.Builder
	for _, c := range cps {
		fmt.Fprintf(&b, "### %s\n%s", c.name, c.table)
	}
	return b.String()
}

// TestScenarioFake runs the scenario on the in-memory tables (golden).
func TestScenarioFake(t *testing.T) {
	golden.Check(t, filepath.Join("testdata", "scenario.golden"), []byte(render(scenario(t, iptablestest.New()))))
}

// TestScenarioKernel runs the scenario with real iptables-restore in a
// namespace, on each backend, and checks the kernel ends each step exactly
// where the fake does (and the golden file says).
func TestScenarioKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	fls := netnstest.IPTablesFlavors(t)
	want := render(scenario(t, iptablestest.New()))
	for _, f := range fls {
		t.Run(string(f), func(t *testing.T) {
			got := render(scenario(t, newNSBackend(t, f)))
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("kernel differs from fake (-fake +kernel):\n%s", diff)
			}
		})
	}
}
