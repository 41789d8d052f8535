package asg

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

type env struct {
	tables *iptablestest.Tables
	rec    *recorder
	source *fakeSource
	syncer *Syncer
	wcfg   *cniwrapper.Config

	mu       sync.Mutex
	notified []string
}

func newEnv(t *testing.T, cfg Config, groups ...policy.SecurityGroup) *env {
	t.Helper()
	e := &env{tables: iptablestest.New(), source: &fakeSource{groups: groups}}
	e.rec = &recorder{Driver: e.tables}
	e.wcfg = wrapperConfig(cfg.ASGLogging, cniwrapper.OutConn{
		Limit: cfg.Conn.Limit, Logging: cfg.Conn.Logging, Burst: cfg.Conn.Burst, RatePerSec: cfg.Conn.RatePerSec,
	})
	var err error
	e.syncer, err = New(logtest.New(t), e.rec, e.source, cfg, func(c Container) {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.notified = append(e.notified, c.Handle)
	})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) add(t *testing.T, cs ...Container) {
	t.Helper()
	for _, c := range cs {
		addContainer(t, e.tables, e.wcfg, c)
	}
}

func (e *env) apply(t *testing.T, tx *iptables.Tx) {
	t.Helper()
	if err := e.tables.Apply(t.Context(), tx); err != nil {
		t.Fatal(err)
	}
}

func (e *env) state(t *testing.T) *iptables.State {
	t.Helper()
	st, err := e.tables.Save(t.Context(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) takeNotified() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := e.notified
	e.notified = nil
	return n
}

func (e *env) syncAll(t *testing.T, cs []Container) Stats {
	t.Helper()
	st, err := e.syncer.SyncAll(t.Context(), cs)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

var (
	cApp     = Container{Handle: hApp, IP: "10.255.17.5", SpaceID: "space-1", Workload: "app", LogConfig: &LogConfig{GUID: "app-guid", Index: 1}}
	cTask    = Container{Handle: hTask, IP: "10.255.17.6", SpaceID: "space-1", Workload: "task"}
	cStaging = Container{Handle: hStaging, IP: "10.255.17.7", SpaceID: "space-1", Workload: "staging", LogConfig: &LogConfig{}}
	cOther   = Container{Handle: hOther, IP: "10.255.17.8", SpaceID: "space-2", Workload: "app", LogConfig: &LogConfig{GUID: "other-guid"}}
	cNoSpace = Container{Handle: hNoSpace, IP: "10.255.17.10", Workload: "app"}
	cBad     = Container{Handle: hBad, IP: "10.255.17.11", SpaceID: "space-bad", Workload: "app"}
	cAbsent  = Container{Handle: "f00d", IP: "10.255.17.9", SpaceID: "space-3", Workload: "app"}
)

func fullConfig() Config {
	deny, _ := rules.ParseDenyNetworks([]string{"169.254.0.0/16"}, []string{"10.10.0.0/16"}, nil)
	return Config{ASGLogging: true, DeniedLogsPerSec: 1, Deny: deny,
		Conn: rules.OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}}
}

// TestSyncAllGolden runs a full poll over a table holding the wrapper's
// chains and leftovers of every kind, and checks the whole filter table.
func TestSyncAllGolden(t *testing.T) {
	e := newEnv(t, fullConfig(), allGroups...)
	e.add(t, cApp, cTask, cStaging, cOther, cNoSpace, cBad)

	// A container deleted while the agent was down: the wrapper's DEL
	// left its log chain (flushed) because the asg chain still used it.
	e.apply(t, iptables.NewTx(iptables.Filter).
		DeclareChain("netout--deadbeef--log").DeclareChain("asg-deadbeef").
		Append("asg-deadbeef", "-m iprange --dst-range 10.0.0.1-10.0.0.1 -g netout--deadbeef--log", rules.Reject()))
	// An upstream agent stopped in the middle of its candidate swap for
	// cTask: parent [-j casg-X, -j asg-X, DENY_ log, REJECT].
	taskChain, taskParent := rules.ASGChain(hTask), rules.Prefix("netout", hTask)
	taskLog := rules.Postfix(taskParent, "log")
	e.apply(t, iptables.NewTx(iptables.Filter).
		DeclareChain(taskChain).DeclareChain("c"+taskChain).
		Append(taskChain, "-p tcp -m iprange --dst-range 1.2.3.4-1.2.3.4 -m tcp --dport 1 -g "+iptables.Rule(taskLog), rules.Reject()).
		Append("c"+taskChain, "-p tcp -m iprange --dst-range 1.2.3.4-1.2.3.4 -m tcp --dport 2 -g "+iptables.Rule(taskLog), rules.Reject()).
		Insert(taskParent, 1, rules.Jump(taskChain), rules.Jump("c"+taskChain)))
	// cBad was synced before its space got a broken group: its chain stays.
	badChain, badParent := rules.ASGChain(hBad), rules.Prefix("netout", hBad)
	e.apply(t, iptables.NewTx(iptables.Filter).
		DeclareChain(badChain).Append(badChain, "-m iprange --dst-range 10.0.0.1-10.0.0.1 -j ACCEPT", rules.Reject()).
		Flush(badParent).Append(badParent, rules.Jump(badChain), rules.Reject()))
	// Chains that are not ours, and an asg chain someone else jumps to.
	e.apply(t, iptables.NewTx(iptables.Filter).
		DeclareChain("foreign").Append("foreign", "-j ACCEPT").Append("FORWARD", rules.Jump("foreign")).
		DeclareChain("asg-pinned").Append("asg-pinned", "-j ACCEPT").Append("OUTPUT", rules.Jump("asg-pinned")))

	st := e.syncAll(t, []Container{cApp, cTask, cStaging, cOther, cAbsent, cNoSpace, cBad})
	golden.Check(t, filepath.Join("testdata", "sync-all.golden"), []byte(dump(e.state(t))))

	if st.Planned != 6 || st.Skipped != 1 || st.Updated != 4 {
		t.Errorf("stats %+v, want 6 planned, 1 skipped, 4 updated", st)
	}
	if diff := cmp.Diff([]string{"c" + taskChain, "asg-deadbeef", "netout--deadbeef--log"}, st.Removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if reads, writes := e.rec.counts(); reads != 1 || writes != 1 {
		t.Errorf("%d reads, %d writes; want one of each (enforce and cleanup together)", reads, writes)
	}
	if diff := cmp.Diff([]string{hApp, hOther}, e.takeNotified()); diff != "" {
		t.Errorf("notified (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([][]string{{"space-1", "space-2", "space-3", "space-bad"}}, e.source.calls); diff != "" {
		t.Errorf("security groups requested for (-want +got):\n%s", diff)
	}
}

func TestNoChangeMakesNoWrite(t *testing.T) {
	e := newEnv(t, fullConfig(), allGroups...)
	cs := []Container{cApp, cOther, cStaging}
	e.add(t, cs...)
	e.syncAll(t, cs)
	before := e.state(t).String()
	e.takeNotified()
	r0, w0 := e.rec.counts()

	st := e.syncAll(t, cs)
	r1, w1 := e.rec.counts()
	if w1 != w0 || r1 != r0+1 {
		t.Errorf("unchanged poll: %d reads, %d writes; want 1 read (cleanup), no write", r1-r0, w1-w0)
	}
	if st.Updated != 0 || len(st.Removed) != 0 {
		t.Errorf("stats %+v", st)
	}
	if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err != nil {
		t.Fatal(err)
	}
	if r2, w2 := e.rec.counts(); r2 != r1 || w2 != w1 {
		t.Errorf("unchanged force: %d reads, %d writes; want none", r2-r1, w2-w1)
	}
	if n := e.takeNotified(); len(n) != 0 {
		t.Errorf("notified %v without a change", n)
	}
	if after := e.state(t).String(); after != before {
		t.Errorf("table changed:\n%s", cmp.Diff(before, after))
	}
}

func TestChangeRewritesOnlyThatContainer(t *testing.T) {
	e := newEnv(t, Config{DeniedLogsPerSec: 1}, sgDefaultRunning, sgSpaceRunning, sgDropped)
	cs := []Container{cApp, cOther}
	e.add(t, cs...)
	e.syncAll(t, cs)
	e.takeNotified()
	_, w0 := e.rec.counts()

	changed := sgDropped
	changed.Rules = strings.Replace(changed.Rules, `"ports":"8080"`, `"ports":"8080,9090"`, 1)
	e.source.set(sgDefaultRunning, sgSpaceRunning, changed)
	e.syncAll(t, cs)
	_, w1 := e.rec.counts()
	if w1-w0 != 1 {
		t.Fatalf("%d writes, want 1", w1-w0)
	}
	other := rules.ASGChain(hOther)
	lines := e.rec.lastWrite()
	for _, l := range lines {
		if !strings.HasPrefix(l, "-I "+other+" ") && !strings.HasPrefix(l, "-A "+other+" ") && !strings.HasPrefix(l, "-D "+other+" ") {
			t.Errorf("change touches more than %s: %q", other, l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("one added rule took %d lines: %q", len(lines), lines)
	}
	if !e.state(t).Contains(other, "-p tcp -m iprange --dst-range 10.9.0.6-10.9.0.6 -m tcp --dport 9090 -j ACCEPT") {
		t.Error("new rule missing")
	}
	if diff := cmp.Diff([]string{hOther}, e.takeNotified()); diff != "" {
		t.Errorf("notified (-want +got):\n%s", diff)
	}
}

func TestParentTrimmedToJumpAndReject(t *testing.T) {
	e := newEnv(t, Config{ASGLogging: true, DeniedLogsPerSec: 1}, sgDefaultRunning)
	e.add(t, cApp)
	parent := rules.Prefix("netout", hApp)
	// Rules a 405-fallback wrapper inserted (garden netOut rules), and an
	// extra rule after the REJECT.
	e.apply(t, iptables.NewTx(iptables.Filter).
		Insert(parent, 1, rules.RelatedEstablished(), "-p tcp -m iprange --dst-range 9.9.9.9-9.9.9.9 -m tcp --dport 1 -j ACCEPT").
		Append(parent, rules.Accept()))
	e.syncAll(t, []Container{cApp})
	want := []iptables.Rule{rules.Jump(rules.ASGChain(hApp)), rules.Reject()}
	if diff := cmp.Diff(want, e.state(t).Rules(parent)); diff != "" {
		t.Errorf("parent (-want +got):\n%s", diff)
	}
}

func TestStaleCandidateRemoved(t *testing.T) {
	for _, tc := range []struct {
		name   string
		parent []string // jumps inserted at the top, in order
	}{
		{"candidate and original", []string{"c", ""}},
		{"candidate only", []string{"c"}},
		{"candidate not referenced", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{ASGLogging: true, DeniedLogsPerSec: 1}, sgDefaultRunning)
			e.add(t, cApp)
			chain, parent := rules.ASGChain(hApp), rules.Prefix("netout", hApp)
			log := iptables.Rule(rules.Postfix(parent, "log"))
			tx := iptables.NewTx(iptables.Filter).DeclareChain(chain).DeclareChain("c"+chain).
				Append(chain, "-m iprange --dst-range 1.1.1.1-1.1.1.1 -g "+log).
				Append("c"+chain, "-m iprange --dst-range 2.2.2.2-2.2.2.2 -g "+log)
			for i, p := range tc.parent {
				tx.InsertInOrder(parent, i+1, rules.Jump(p+chain))
			}
			e.apply(t, tx)
			if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err != nil {
				t.Fatal(err)
			}
			st := e.state(t)
			if st.Has("c" + chain) {
				t.Error("candidate chain still there")
			}
			if diff := cmp.Diff([]iptables.Rule{rules.Jump(chain), rules.Reject()}, st.Rules(parent)); diff != "" {
				t.Errorf("parent (-want +got):\n%s", diff)
			}
			if !st.Has(string(log)) {
				t.Error("log chain removed although asg chain uses it")
			}
			if r := st.Rules(chain); len(r) == 0 || r[len(r)-1] != rules.Reject() {
				t.Errorf("asg chain %v", r)
			}
		})
	}
}

func TestSyncContainersSkips(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	// Unknown handle (no metadata), no space, absent parent.
	if err := e.syncer.SyncContainers(t.Context(), []Container{{Handle: "unknown"}, cNoSpace}); err != nil {
		t.Fatal(err)
	}
	if len(e.source.calls) != 0 {
		t.Errorf("security groups fetched for containers without spaces: %v", e.source.calls)
	}
	if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err != nil {
		t.Fatal(err)
	}
	if _, w := e.rec.counts(); w != 0 {
		t.Errorf("%d writes for a container without netout chain", w)
	}
	if got := e.tables.Chains(iptables.Filter); len(got) != 0 {
		t.Errorf("chains created: %v", got)
	}
	// Once the wrapper created the chain, the force applies (the absent
	// parent was not cached as applied).
	e.add(t, cApp)
	if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err != nil {
		t.Fatal(err)
	}
	if !e.state(t).Has(rules.ASGChain(hApp)) {
		t.Error("asg chain missing")
	}
	if diff := cmp.Diff([]string{hApp}, e.takeNotified()); diff != "" {
		t.Errorf("notified (-want +got):\n%s", diff)
	}
}

func TestCleanupContainerAfterWrapperDel(t *testing.T) {
	e := newEnv(t, Config{ASGLogging: true, DeniedLogsPerSec: 1, Conn: rules.OutConn{Limit: true, Logging: true, Burst: 10, RatePerSec: 5}}, sgDefaultRunning)
	e.add(t, cApp, cOther)
	e.syncAll(t, []Container{cApp, cOther})
	otherBefore := dumpChains(e.state(t), hOther)

	// The wrapper's DEL: its chains go, except the log chains the asg
	// chain still refers to (left flushed).
	del := &cniwrapper.DelPlanner{Handle: hApp, VTEPName: "silk-vtep"}
	if _, err := e.tables.UpdateTables(t.Context(), cniwrapper.DelTables, del.Plan); err != nil {
		t.Fatal(err)
	}
	logChain := rules.Postfix(rules.Prefix("netout", hApp), "log")
	rlChain := rules.Postfix(rules.Prefix("netout", hApp), "rl-log")
	if diff := cmp.Diff([]string{logChain, rlChain}, del.Kept); diff != "" {
		t.Fatalf("wrapper kept (-want +got):\n%s", diff)
	}
	// An upstream candidate left over too.
	e.apply(t, iptables.NewTx(iptables.Filter).DeclareChain(rules.ASGCandidateChain(hApp)).
		Append(rules.ASGCandidateChain(hApp), "-g "+iptables.Rule(logChain)))

	if err := e.syncer.CleanupContainer(t.Context(), hApp); err != nil {
		t.Fatal(err)
	}
	st := e.state(t)
	for _, c := range []string{rules.ASGChain(hApp), rules.ASGCandidateChain(hApp), logChain, rlChain} {
		if st.Has(c) {
			t.Errorf("%s still there", c)
		}
	}
	if diff := cmp.Diff(otherBefore, dumpChains(st, hOther)); diff != "" {
		t.Errorf("other container's chains changed (-before +after):\n%s", diff)
	}
	// Nothing left to clean: no write.
	_, w := e.rec.counts()
	if err := e.syncer.CleanupContainer(t.Context(), hApp); err != nil {
		t.Fatal(err)
	}
	if _, w2 := e.rec.counts(); w2 != w {
		t.Error("cleanup of nothing wrote")
	}
	// A new container with the same handle is synced again (cache dropped).
	e.add(t, cApp)
	if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err != nil {
		t.Fatal(err)
	}
	if !e.state(t).Has(rules.ASGChain(hApp)) {
		t.Error("asg chain not recreated")
	}
}

func TestCleanupContainerLeavesChainOfAnotherContainer(t *testing.T) {
	// "check-X" and "X" share the asg chain name (upstream's naming): the
	// cleanup of one must not take the chain the other's parent uses.
	e := newEnv(t, Config{}, sgDefaultRunning)
	c := Container{Handle: "abcd", IP: "10.255.0.2", SpaceID: "space-1", Workload: "app"}
	e.add(t, c)
	e.syncAll(t, []Container{c})
	if err := e.syncer.CleanupContainer(t.Context(), "check-abcd"); err != nil {
		t.Fatal(err)
	}
	st := e.state(t)
	if len(st.Rules("asg-abcd")) == 0 || st.Rules("netout--abcd")[0] != rules.Jump("asg-abcd") {
		t.Errorf("live container's chain touched:\n%s", dump(st))
	}
}

func TestOrphansRemovedAndForeignLeft(t *testing.T) {
	e := newEnv(t, Config{ASGLogging: true, DeniedLogsPerSec: 1}, sgDefaultRunning)
	e.add(t, cApp, cOther)
	e.syncAll(t, []Container{cApp, cOther})
	// cOther's container is gone from the store but the wrapper's DEL has
	// not run yet: its parent still exists and jumps to the asg chain.
	e.apply(t, iptables.NewTx(iptables.Filter).DeclareChain("asgfoo").DeclareChain("asg-foreign").
		Append("asg-foreign", "-j ACCEPT").Append("INPUT", rules.Jump("asg-foreign")))
	st := e.syncAll(t, []Container{cApp})
	after := e.state(t)
	other, otherParent := rules.ASGChain(hOther), rules.Prefix("netout", hOther)
	if after.Has(other) {
		t.Error("orphan asg chain still there")
	}
	if diff := cmp.Diff([]iptables.Rule{rules.Reject()}, after.Rules(otherParent)); diff != "" {
		t.Errorf("orphan's parent (-want +got):\n%s", diff)
	}
	if !after.Has(rules.Postfix(otherParent, "log")) {
		t.Error("log chain of a container whose netout chain exists was removed")
	}
	if !after.Has("asgfoo") || len(after.Rules("asg-foreign")) != 1 {
		t.Errorf("foreign chains touched:\n%s", dump(after))
	}
	if diff := cmp.Diff([]string{other}, st.Removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	if !after.Has(rules.ASGChain(hApp)) {
		t.Error("live container's chain removed")
	}
}

func TestBadRulesKeepChain(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	c := cBad
	e.add(t, c, cApp)
	e.syncAll(t, []Container{c, cApp})
	before := dumpChains(e.state(t), hBad)
	if !strings.Contains(before, rules.ASGChain(hBad)) {
		t.Fatal("setup: no chain")
	}
	e.source.set(sgDefaultRunning, sgBadDestination)
	st, err := e.syncer.SyncAll(t.Context(), []Container{c, cApp})
	if err != nil {
		t.Fatal(err)
	}
	if st.Skipped != 1 {
		t.Errorf("stats %+v", st)
	}
	if diff := cmp.Diff(before, dumpChains(e.state(t), hBad)); diff != "" {
		t.Errorf("skipped container's chains changed (-before +after):\n%s", diff)
	}
	// A new container in that space gets no asg chain: netout--H rejects.
	n := Container{Handle: "ba0d0001", IP: "10.255.0.9", SpaceID: "space-bad", Workload: "app"}
	e.add(t, n)
	if err := e.syncer.SyncContainers(t.Context(), []Container{n}); err != nil {
		t.Fatal(err)
	}
	if e.state(t).Has(rules.ASGChain(n.Handle)) {
		t.Error("chain created for a container whose rules do not convert")
	}
}

func TestBatchFailureFallsBackPerContainer(t *testing.T) {
	e := newEnv(t, Config{ASGLogging: true, DeniedLogsPerSec: 1}, sgDefaultRunning, sgSpaceRunning)
	e.add(t, cApp, cTask, cOther)
	// cTask's log chain is gone: its rules cannot be applied; the others
	// still are.
	taskLog := rules.Postfix(rules.Prefix("netout", hTask), "log")
	e.apply(t, iptables.NewTx(iptables.Filter).Flush(taskLog).DeleteChain(taskLog))
	// And the first write fails (another writer, a kernel hiccup).
	e.tables.FailNext = errors.New("boom")
	_, err := e.syncer.SyncAll(t.Context(), []Container{cApp, cTask, cOther})
	if err == nil || !strings.Contains(err.Error(), taskLog) {
		t.Fatalf("err = %v, want one naming %s", err, taskLog)
	}
	st := e.state(t)
	for _, h := range []string{hApp, hOther} {
		if !st.Has(rules.ASGChain(h)) {
			t.Errorf("%s not applied", h)
		}
	}
	if st.Has(rules.ASGChain(hTask)) {
		t.Error("task chain applied without its log chain")
	}
	if diff := cmp.Diff([]string{hApp, hOther}, e.takeNotified()); diff != "" {
		t.Errorf("notified (-want +got):\n%s", diff)
	}
	// The failing container is retried on the next poll.
	addContainer(t, e.tables, e.wcfg, Container{Handle: "tmp", IP: "10.255.0.99"}) // unrelated writes are fine
	e.apply(t, iptables.NewTx(iptables.Filter).DeclareChain(taskLog))
	if _, err := e.syncer.SyncAll(t.Context(), []Container{cApp, cTask, cOther}); err != nil {
		t.Fatal(err)
	}
	if !e.state(t).Has(rules.ASGChain(hTask)) {
		t.Error("task chain not applied on retry")
	}
}

func TestDriftRepaired(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	e.add(t, cApp)
	e.syncAll(t, []Container{cApp})
	want := dump(e.state(t))
	e.takeNotified()
	chain, parent := rules.ASGChain(hApp), rules.Prefix("netout", hApp)
	e.apply(t, iptables.NewTx(iptables.Filter).Flush(chain).Insert(parent, 2, rules.Accept()))
	e.syncAll(t, []Container{cApp})
	if diff := cmp.Diff(want, dump(e.state(t))); diff != "" {
		t.Errorf("not repaired (-want +got):\n%s", diff)
	}
	if n := e.takeNotified(); len(n) != 0 {
		t.Errorf("repair notified %v", n)
	}
}

func TestSourceErrorChangesNothing(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	e.add(t, cApp, cOther)
	e.syncAll(t, []Container{cApp, cOther})
	before := e.state(t).String()
	_, w0 := e.rec.counts()
	e.source.err = errors.New("policy server down")
	if _, err := e.syncer.SyncAll(t.Context(), []Container{cApp}); err == nil {
		t.Error("no error")
	}
	if err := e.syncer.SyncContainers(t.Context(), []Container{cApp}); err == nil {
		t.Error("no error")
	}
	if _, w := e.rec.counts(); w != w0 || e.state(t).String() != before {
		t.Error("table changed after a failed fetch")
	}
}

func TestSyncAllWithoutSpacesRemovesEverything(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	e.add(t, cApp)
	e.syncAll(t, []Container{cApp})
	st := e.syncAll(t, []Container{cNoSpace})
	if len(e.source.calls) != 1 {
		t.Errorf("fetched security groups with no space to fetch for: %v", e.source.calls)
	}
	if diff := cmp.Diff([]string{rules.ASGChain(hApp)}, st.Removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
}

func TestConcurrentCallsAreSerialised(t *testing.T) {
	e := newEnv(t, fullConfig(), allGroups...)
	cs := []Container{cApp, cTask, cStaging, cOther}
	e.add(t, cs...)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			switch i % 3 {
			case 0:
				_, err = e.syncer.SyncAll(context.Background(), cs)
			case 1:
				err = e.syncer.SyncContainers(context.Background(), cs[i%len(cs):i%len(cs)+1])
			case 2:
				err = e.syncer.CleanupContainer(context.Background(), "gone")
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	e.syncAll(t, cs)
	for _, c := range cs {
		if !e.state(t).Has(rules.ASGChain(c.Handle)) {
			t.Errorf("%s missing", c.Handle)
		}
	}
}

// dumpChains renders the chains whose name contains the handle's chain
// name fragments.
func dumpChains(st *iptables.State, handle string) string {
	var b strings.Builder
	for _, c := range []string{rules.ASGChain(handle), rules.Prefix("netout", handle), rules.Postfix(rules.Prefix("netout", handle), "log")} {
		for _, r := range st.Rules(c) {
			b.WriteString("-A " + c + " " + string(r) + "\n")
		}
	}
	return b.String()
}

func TestCleanupStillRunsWhenRepairFails(t *testing.T) {
	e := newEnv(t, Config{}, sgDefaultRunning)
	e.add(t, cApp)
	e.syncAll(t, []Container{cApp})
	chain := rules.ASGChain(hApp)
	e.apply(t, iptables.NewTx(iptables.Filter).Flush(chain).DeclareChain("asg-orphan"))
	e.tables.FailNext = errors.New("boom")
	st, err := e.syncer.SyncAll(t.Context(), []Container{cApp})
	if err != nil {
		t.Fatal(err)
	}
	if e.state(t).Has("asg-orphan") || len(st.Removed) != 1 {
		t.Errorf("orphan not removed: %+v", st)
	}
	if len(e.state(t).Rules(chain)) != 0 {
		t.Error("repair applied although its transaction failed")
	}
	e.syncAll(t, []Container{cApp})
	if len(e.state(t).Rules(chain)) == 0 {
		t.Error("not repaired on the next poll")
	}
}
