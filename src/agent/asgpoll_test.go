package agent

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/agent/asg"
	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/policy"
)

// asgServer is the security-group half of policy-server-internal in
// memory: the groups, a stamp that moves with every change, and optionally
// the security_groups_last_updated endpoint (served) and its long-poll form.
type asgServer struct {
	mu       sync.Mutex
	groups   []policy.SecurityGroup
	version  int64
	served   bool // security_groups_last_updated exists (newer upstream, netman)
	longPoll bool // and offers the long-poll form (netman)
	changed  chan struct{}
	fetches  [][]string // space lists of security group fetches
	reads    int        // plain stamp reads
	waits    int        // long-polls of the stamp
}

func (s *asgServer) set(groups ...policy.SecurityGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups = groups
	s.version++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *asgServer) fetchCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.fetches)
}

func (s *asgServer) waitCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waits
}

// SecurityGroups answers as the real server: defaults plus groups bound to
// any of the spaces.
func (s *asgServer) SecurityGroups(_ context.Context, spaces []string) ([]policy.SecurityGroup, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fetches = append(s.fetches, slices.Clone(spaces))
	var out []policy.SecurityGroup
	for _, g := range s.groups {
		bound := slices.ContainsFunc(spaces, func(sp string) bool {
			return slices.Contains(g.StagingSpaceGUIDs, sp) || slices.Contains(g.RunningSpaceGUIDs, sp)
		})
		if g.StagingDefault || g.RunningDefault || bound {
			out = append(out, g)
		}
	}
	return out, nil
}

func (s *asgServer) SecurityGroupsLastUpdated(context.Context) (int64, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if !s.served {
		return 0, false, &StatusError{Code: 404, Body: "404 page not found\n"}
	}
	return s.version, s.longPoll, nil
}

func (s *asgServer) WaitSecurityGroupsLastUpdated(ctx context.Context, since int64, wait, _ time.Duration) (int64, bool, error) {
	s.mu.Lock()
	s.waits++
	s.mu.Unlock()
	return fakeLongPoll(ctx, &s.mu, since, wait, func() (int64, chan struct{}, bool, error) {
		if !s.served {
			return 0, nil, false, &StatusError{Code: 404, Body: "404 page not found\n"}
		}
		return s.version, s.changed, s.longPoll, nil
	})
}

type asgFixture struct {
	*fixture
	asgs        *asgServer
	asgSync     *asgCycle
	asgInterval time.Duration
}

// newASGFixture is the agent's ASG cycle, as Run builds it, over the fake
// iptables, with containers h1 (space-1) and h2 (space-2) set up as
// cni-wrapper-plugin does, polling ASGs every asgPoll seconds.
func newASGFixture(t *testing.T, served, longPoll bool, asgPoll int) *asgFixture {
	t.Helper()
	f := newFixture(t, longPoll, 3600)
	ctx := context.Background()
	if err := f.store.Add(ctx, "h2", "10.255.1.3", map[string]any{"policy_group_id": "app-b", "space_id": "space-2", "container_workload": "app"}); err != nil {
		t.Fatal(err)
	}
	srv := &asgServer{version: 1, served: served, longPoll: longPoll, changed: make(chan struct{})}
	cfg := Config{EnableASGSyncing: true, ASGPollInterval: asgPoll, ClientTimeoutSeconds: 5}
	cache := &groupCache{src: srv}
	s, err := asg.New(f.logger, f.ipt, cache, asg.Config{DeniedLogsPerSec: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	wcfg := &cniwrapper.Config{InstanceAddress: "10.244.0.3", NoMasqueradeCIDRRange: "10.255.0.0/16", IPTablesDeniedLogsPerSec: 1,
		IPTablesAcceptedUDPLogsPerSec: 100, IngressTag: "ffff0000", VTEPName: "silk-vtep"}
	for _, c := range []struct{ h, ip string }{{"h1", "10.255.1.2"}, {"h2", "10.255.1.3"}} {
		plan, err := cniwrapper.PlanAdd(wcfg, cniwrapper.Container{Handle: c.h, IP: netip.MustParseAddr(c.ip), Workload: "app", Interfaces: []string{"eth0"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.ipt.Apply(ctx, plan.Filter); err != nil {
			t.Fatal(err)
		}
	}
	return &asgFixture{fixture: f, asgs: srv,
		asgSync:     newASGCycle(f.logger, f.sender, f.store, s, cache, srv, cfg.longPoll()),
		asgInterval: cfg.asgPollInterval(),
	}
}

// runASG runs the ASG watcher and poller, as Run does, until the test ends.
func (f *asgFixture) runASG(t *testing.T) {
	runMembers(t, f.logger, f.asgSync.members(f.asgInterval, f.asgInterval/10)...)
}

// egress reports whether handle's asg chain accepts traffic to dest.
func (f *asgFixture) egress(t *testing.T, handle, dest string) bool {
	t.Helper()
	st, err := f.ipt.Save(context.Background(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range st.ChainNames(func(n string) bool { return strings.HasPrefix(n, "asg-") }) {
		if !slices.ContainsFunc(st.Rules("netout--"+handle), func(r iptables.Rule) bool { return strings.Contains(string(r), "-j "+name) }) {
			continue
		}
		for _, r := range st.Rules(name) {
			if strings.Contains(string(r), "--dst-range "+dest+"-"+dest+" ") && strings.HasSuffix(string(r), "-j ACCEPT") {
				return true
			}
		}
	}
	return false
}

func group(guid, dest string, runningDefault bool, runningSpaces ...string) policy.SecurityGroup {
	return policy.SecurityGroup{GUID: guid, Name: guid, RunningDefault: runningDefault,
		Rules:             fmt.Sprintf(`[{"protocol":"tcp","destination":"%s","ports":"443"}]`, dest),
		StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: append([]string{}, runningSpaces...)}
}

func TestASGLongPollPropagatesAtOnce(t *testing.T) {
	f := newASGFixture(t, true, true, 3600) // plain polls would take an hour
	f.asgs.set(group("dns", "10.0.0.53", true))
	f.runASG(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.egress(t, "h1", "10.0.0.53") && f.egress(t, "h2", "10.0.0.53") })

	f.asgs.set(group("dns", "10.0.0.53", true), group("db", "10.9.9.9", false, "space-1"))
	waitFor(t, 2*time.Second, "long-polled bind", func() bool { return f.egress(t, "h1", "10.9.9.9") })
	if f.egress(t, "h2", "10.9.9.9") {
		t.Error("a group bound to space-1 opened egress from space-2's container")
	}
	f.asgs.set(group("dns", "10.0.0.53", true))
	waitFor(t, 2*time.Second, "long-polled unbind", func() bool { return !f.egress(t, "h1", "10.9.9.9") })
	if n, _ := f.sender.Registry().Counter(MetricASGLongPollFailures); n != 0 {
		t.Errorf("%s = %d", MetricASGLongPollFailures, n)
	}
}

func TestASGPollSkipsFetchWhileTheStampStands(t *testing.T) {
	f := newASGFixture(t, true, false, 60)
	ctx := context.Background()
	f.asgs.set(group("dns", "10.0.0.53", true), group("db", "10.9.9.9", false, "space-1"))
	cycle := func() {
		t.Helper()
		if err := f.asgSync.Sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		name        string
		change      func()
		wantFetches int
		h1, h2      bool // egress to 10.9.9.9
	}{
		{"first poll fetches", nil, 1, true, false},
		{"unchanged stamp: no fetch", nil, 1, true, false},
		{"again no fetch", nil, 1, true, false},
		{"stamp moved: fetch", func() {
			f.asgs.set(group("dns", "10.0.0.53", true), group("db", "10.9.9.9", false, "space-1", "space-2"))
		}, 2, true, true},
		{"container gone, spaces a subset: no fetch", func() {
			if _, err := f.store.Delete(ctx, "h2"); err != nil {
				t.Fatal(err)
			}
		}, 2, true, false},
		{"container in a space not fetched: fetch", func() {
			if err := f.store.Add(ctx, "h2", "10.255.1.3", map[string]any{"policy_group_id": "app-b", "space_id": "space-3", "container_workload": "app"}); err != nil {
				t.Fatal(err)
			}
		}, 3, true, false},
		{"back in space-2, no longer cached: fetch", func() {
			if _, err := f.store.Delete(ctx, "h2"); err != nil {
				t.Fatal(err)
			}
			if err := f.store.Add(ctx, "h2", "10.255.1.3", map[string]any{"policy_group_id": "app-b", "space_id": "space-2", "container_workload": "app"}); err != nil {
				t.Fatal(err)
			}
		}, 4, true, true},
	}
	for _, s := range steps {
		if s.change != nil {
			s.change()
		}
		cycle()
		if got := f.asgs.fetchCount(); got != s.wantFetches {
			t.Errorf("%s: %d fetches, want %d", s.name, got, s.wantFetches)
		}
		if s.name == "container gone, spaces a subset: no fetch" {
			continue // h2's chains stay until the force cleanup; only h1 counts
		}
		if h1, h2 := f.egress(t, "h1", "10.9.9.9"), f.egress(t, "h2", "10.9.9.9"); h1 != s.h1 || h2 != s.h2 {
			t.Errorf("%s: egress h1=%v h2=%v, want %v %v", s.name, h1, h2, s.h1, s.h2)
		}
	}
	if hits := f.asgSync.cache.Hits(); hits != 3 {
		t.Errorf("cache hits = %d, want 3", hits)
	}
	// The force endpoint (container creation) never trusts the cache.
	before := f.asgs.fetchCount()
	if err := f.asgSync.SyncContainer(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if f.asgs.fetchCount() != before+1 {
		t.Error("force-asgs-for-container answered from the cache")
	}
}

func TestASGPollAgainstUpstreamWithoutTheStamp(t *testing.T) {
	f := newASGFixture(t, false, false, 1)
	ctx := context.Background()
	f.asgs.set(group("db", "10.9.9.9", false, "space-1"))
	for i := 1; i <= 3; i++ {
		if err := f.asgSync.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if got := f.asgs.fetchCount(); got != i {
			t.Fatalf("poll %d: %d fetches; without the stamp every poll fetches", i, got)
		}
	}
	if !f.egress(t, "h1", "10.9.9.9") {
		t.Fatal("group not applied")
	}
	// The loop polls plainly every asg_poll_interval.
	f.runASG(t)
	f.asgs.set()
	waitFor(t, 3*time.Second, "polled unbind", func() bool { return !f.egress(t, "h1", "10.9.9.9") })
	if n := f.asgs.waitCount(); n != 0 {
		t.Errorf("%d long-polls against a server without the endpoint", n)
	}
}

func TestASGPlainPollsWhenLongPollIsNotOffered(t *testing.T) {
	f := newASGFixture(t, true, false, 1)
	f.asgs.set(group("db", "10.9.9.9", false, "space-1"))
	f.runASG(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.egress(t, "h1", "10.9.9.9") })
	f.asgs.set()
	waitFor(t, 3*time.Second, "polled unbind", func() bool { return !f.egress(t, "h1", "10.9.9.9") })
	if n := f.asgs.waitCount(); n != 0 {
		t.Errorf("%d long-polls although the server does not offer them", n)
	}
}
