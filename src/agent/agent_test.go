package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// fakeServer is policy-server-internal in memory: policies, a version that
// moves with every change, and optional long-poll support.
type fakeServer struct {
	mu       sync.Mutex
	policies []c2c.Policy
	version  int64
	longPoll bool
	err      error
	changed  chan struct{}
	polls    int // plain last-updated reads
	waits    int // long-polls of last-updated
	fetches  int // policy fetches
}

func newFakeServer(longPoll bool) *fakeServer {
	return &fakeServer{version: 1, longPoll: longPoll, changed: make(chan struct{})}
}

func (f *fakeServer) set(ps ...c2c.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies = ps
	f.version++
	close(f.changed)
	f.changed = make(chan struct{})
}

// offerLongPoll turns the long-poll form on or off, as replacing the
// server with upstream's (or back) does.
func (f *fakeServer) offerLongPoll(on bool) {
	f.mu.Lock()
	f.longPoll = on
	f.mu.Unlock()
}

func (f *fakeServer) counts() (polls, waits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.polls, f.waits
}

func (f *fakeServer) fail(err error) {
	f.mu.Lock()
	f.err = err
	f.mu.Unlock()
}

func (f *fakeServer) Policies(_ context.Context, ids ...string) ([]c2c.Policy, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fetches++
	if f.err != nil {
		return nil, f.err
	}
	return append([]c2c.Policy(nil), f.policies...), nil
}

func (f *fakeServer) LastUpdated(context.Context) (int64, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.polls++
	return f.version, f.longPoll, f.err
}

// WaitPolicies ignores ids: every change answers, as on a server without
// targeted long-polls.
func (f *fakeServer) WaitPolicies(ctx context.Context, since int64, _ []string, wait, _ time.Duration) (Stamp, error) {
	f.mu.Lock()
	f.waits++
	f.mu.Unlock()
	v, offered, err := fakeLongPoll(ctx, &f.mu, since, wait, func() (int64, chan struct{}, bool, error) {
		return f.version, f.changed, f.longPoll, f.err
	})
	return Stamp{Value: v, LongPoll: offered}, err
}

// fakeLongPoll answers a long-poll of a fake server's version: at once when
// it failed, moved past since or long-poll is off, else when changed is
// closed or wait has passed. state is read under mu.
func fakeLongPoll(ctx context.Context, mu *sync.Mutex, since int64, wait time.Duration, state func() (v int64, changed chan struct{}, longPoll bool, err error)) (int64, bool, error) {
	mu.Lock()
	v, ch, lp, err := state()
	mu.Unlock()
	if err != nil {
		return 0, false, err
	}
	if v != since || !lp {
		return v, lp, nil
	}
	select {
	case <-ch:
	case <-time.After(wait):
	case <-ctx.Done():
		return 0, false, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	v, _, _, err = state()
	return v, true, err
}

func (f *fakeServer) CreateOrGetTag(context.Context, string, string) (string, error) {
	return "FFFF", nil
}

type fixture struct {
	policies *policyCycle
	server   *fakeServer
	ipt      *iptablestest.Tables
	store    *metadata.Store
	sender   *metrics.Sender
	logger   lager.Logger
	// The policy poller's timing (run).
	interval, jitter time.Duration
}

func newFixture(t *testing.T, longPoll bool, pollInterval int) *fixture {
	t.Helper()
	return newFixtureWithLogger(t, logtest.New(t), longPoll, pollInterval)
}

// newFixtureWithLogger is the agent's policy cycle, as Run builds it, over
// the fake server and iptables, with containers h1 (app-a) and h2 (app-b).
func newFixtureWithLogger(t *testing.T, logger lager.Logger, longPoll bool, pollInterval int) *fixture {
	t.Helper()
	store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	ctx := context.Background()
	for _, c := range []struct{ h, ip, app string }{{"h1", "10.255.1.2", "app-a"}, {"h2", "10.255.1.3", "app-b"}} {
		if err := store.Add(ctx, c.h, c.ip, map[string]any{"policy_group_id": c.app, "space_id": "space-1", "container_workload": "app"}); err != nil {
			t.Fatal(err)
		}
	}
	sender, err := metrics.NewSender(nil, "vxlan-policy-agent", 0)
	if err != nil {
		t.Fatal(err)
	}
	srv := newFakeServer(longPoll)
	ipt := iptablestest.New()
	cfg := Config{PollInterval: pollInterval, IPTablesAcceptedUDPLogsPerSec: 100, ClientTimeoutSeconds: 5}
	return &fixture{
		policies: newPolicyCycle(logger, sender, store, srv, iptablesC2C{enforcer: c2c.NewEnforcer(ipt)}, cfg.c2cRules(), cfg.longPoll()),
		server:   srv, ipt: ipt, store: store, sender: sender, logger: logger,
		interval: cfg.pollInterval(), jitter: cfg.pollInterval() / 10,
	}
}

func policyAB(port int) c2c.Policy {
	return c2c.Policy{Source: c2c.Endpoint{ID: "app-a", Tag: "0001"}, Destination: c2c.Destination{ID: "app-b", Tag: "0002", Protocol: "tcp", Start: port, End: port}}
}

// accepts reports whether the vpa chain accepts app-a → app-b on port.
func (f *fixture) accepts(t *testing.T, port int) bool {
	t.Helper()
	st, err := f.ipt.Save(context.Background(), iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	chain := f.policies.enforcer.Chain()
	if chain == "" {
		return false
	}
	for _, r := range st.Rules(chain) {
		if strings.Contains(string(r), fmt.Sprintf("--dport %d -m mark --mark 0x1", port)) && strings.HasSuffix(string(r), "-j ACCEPT") {
			return true
		}
	}
	return false
}

// run runs the policy watcher and poller, as Run does, until the test ends
// or stop is called.
func (f *fixture) run(t *testing.T) (stop func()) {
	return runMembers(t, f.logger, f.policies.members(f.interval, f.jitter)...)
}

// runMembers runs members as a lifecycle group until the test ends or
// stop is called; they must then stop cleanly.
func runMembers(t *testing.T, logger lager.Logger, members ...lifecycle.Member) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lifecycle.RunContext(ctx, logger, members...) }()
	stop = sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("members: %v", err)
		}
	})
	t.Cleanup(stop)
	return stop
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLongPollPropagatesWithinOneRoundTrip(t *testing.T) {
	f := newFixture(t, true, 3600) // plain polls would take an hour
	f.server.set(policyAB(8080))
	f.run(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.accepts(t, 8080) })
	f.server.set(policyAB(8080), policyAB(9090))
	waitFor(t, 2*time.Second, "long-polled change", func() bool { return f.accepts(t, 9090) })
	f.server.set(policyAB(9090))
	waitFor(t, 2*time.Second, "long-polled delete", func() bool { return !f.accepts(t, 8080) })
}

func TestPlainPollingAgainstUpstreamServer(t *testing.T) {
	f := newFixture(t, false, 1)
	f.jitter = 0
	f.server.set(policyAB(8080))
	f.run(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.accepts(t, 8080) })
	f.server.set(policyAB(9090))
	waitFor(t, 3*time.Second, "polled change", func() bool { return f.accepts(t, 9090) && !f.accepts(t, 8080) })
	// An unchanged version skips the policy fetch.
	f.server.mu.Lock()
	fetches := f.server.fetches
	f.server.mu.Unlock()
	time.Sleep(2500 * time.Millisecond)
	f.server.mu.Lock()
	defer f.server.mu.Unlock()
	if f.server.fetches != fetches {
		t.Errorf("policies fetched %d more times with nothing changed", f.server.fetches-fetches)
	}
	if f.server.polls < 2 {
		t.Errorf("only %d plain polls", f.server.polls)
	}
}

// TestLongPollFallsBackAndResumes: when the server stops offering the
// long-poll the watcher idles and plain polls carry changes; when a plain
// read finds it offered again the watcher long-polls again.
func TestLongPollFallsBackAndResumes(t *testing.T) {
	logger, capture := logtest.NewCapture(t, "agent")
	f := newFixtureWithLogger(t, logger, true, 1)
	f.jitter = 0
	f.server.set(policyAB(8080))
	f.run(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.accepts(t, 8080) })
	waitFor(t, 2*time.Second, "a parked long-poll", func() bool { _, waits := f.server.counts(); return waits > 0 })

	f.server.offerLongPoll(false)
	f.server.set(policyAB(9090))
	waitFor(t, 3*time.Second, "long-polled change", func() bool { return f.accepts(t, 9090) })
	waitFor(t, 3*time.Second, "fallback", func() bool { return len(capture.Find("agent.long-poll-not-offered")) == 1 })
	_, waits := f.server.counts()
	f.server.set(policyAB(7070))
	waitFor(t, 3*time.Second, "polled change", func() bool { return f.accepts(t, 7070) && !f.accepts(t, 9090) })
	if polls, w := f.server.counts(); w != waits || polls < 2 {
		t.Errorf("after the fallback: %d long-polls more, %d plain polls", w-waits, polls)
	}

	f.server.offerLongPoll(true)
	waitFor(t, 3*time.Second, "long-poll resumed", func() bool { _, w := f.server.counts(); return w > waits })
	f.server.set(policyAB(6060))
	waitFor(t, 3*time.Second, "long-polled change", func() bool { return f.accepts(t, 6060) })
	if n := len(capture.Find("agent.long-poll-not-offered")); n != 1 {
		t.Errorf("long-poll-not-offered logged %d times, want 1", n)
	}
}

func TestFailStatic(t *testing.T) {
	f := newFixture(t, true, 1)
	f.server.set(policyAB(8080))
	ctx := context.Background()
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	before := f.ipt.Dump(iptables.Filter)
	for _, err := range []error{errors.New("connection refused"), errors.New("json unmarshal: garbage")} {
		f.server.fail(err)
		if err := f.policies.Sync(ctx); err == nil {
			t.Fatal("want the error")
		}
		if after := f.ipt.Dump(iptables.Filter); after != before {
			t.Fatalf("rules changed on a failed cycle:\n%s", after)
		}
	}
	if n, _ := f.sender.Registry().Counter(MetricPolicyCycleFailures); n != 2 {
		t.Errorf("%s = %d, want 2", MetricPolicyCycleFailures, n)
	}
	// Back: the loop retries (with backoff) and converges.
	f.server.fail(nil)
	f.server.set(policyAB(9090))
	f.run(t)
	waitFor(t, 3*time.Second, "recovery", func() bool { return f.accepts(t, 9090) })
}

// TestFailedEnforceRereadsTheKernel: a cycle whose write failed (a lock
// timeout, or a restore killed after its commit) leaves the enforcer
// distrusting its memory, so the next cycle reads the kernel and converges
// from it — here dropping a rule someone added to the chain meanwhile,
// which a delta computed from memory would have kept.
func TestFailedEnforceRereadsTheKernel(t *testing.T) {
	f := newFixture(t, false, 1)
	f.server.set(policyAB(8080))
	ctx := context.Background()
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	chain := f.policies.enforcer.Chain()
	rogue := iptables.Rule("-s 10.9.9.9/32 -j ACCEPT")
	if err := f.ipt.Apply(ctx, iptables.NewTx(iptables.Filter).Append(chain, rogue)); err != nil {
		t.Fatal(err)
	}
	f.server.set(policyAB(9090))
	f.ipt.FailNext = errors.New("iptables lock timeout")
	if err := f.policies.Sync(ctx); err == nil || err.Error() != "enforce: iptables lock timeout" {
		t.Fatalf("cycle with a failing write: %v", err)
	}
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := f.ipt.Save(ctx, iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Rules(chain); slices.Contains(got, rogue) {
		t.Errorf("the retry trusted its memory: %s still holds %q", chain, rogue)
	}
	if !f.accepts(t, 9090) || f.accepts(t, 8080) {
		t.Errorf("retry did not converge:\n%s", f.ipt.Dump(iptables.Filter))
	}
}

func TestRetriesWithBackoffWhileServerIsDown(t *testing.T) {
	f := newFixture(t, false, 60)
	f.server.set(policyAB(8080))
	f.server.fail(errors.New("down"))
	f.run(t)
	time.Sleep(1200 * time.Millisecond)
	f.server.mu.Lock()
	fetches := f.server.fetches
	f.server.mu.Unlock()
	// 0, 0.5 s, 1.5 s: two or three tries, not a hot loop and not one per minute.
	if fetches < 2 || fetches > 4 {
		t.Errorf("%d attempts in 1.2 s", fetches)
	}
	f.server.fail(nil)
	waitFor(t, 3*time.Second, "recovery", func() bool { return f.accepts(t, 8080) })
}

func TestNewContainerTriggersCycle(t *testing.T) {
	f := newFixture(t, true, 1)
	f.jitter = 0
	f.server.set(c2c.Policy{Source: c2c.Endpoint{ID: "app-a", Tag: "0001"}, Destination: c2c.Destination{ID: "app-c", Tag: "0003", Protocol: "tcp", Start: 80, End: 80}})
	f.run(t)
	waitFor(t, 2*time.Second, "first sync", func() bool { return f.policies.enforcer.Chain() != "" })
	if err := f.store.Add(context.Background(), "h3", "10.255.1.9", map[string]any{"policy_group_id": "app-c"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "rules for the new container", func() bool {
		return strings.Contains(f.ipt.Dump(iptables.Filter), "-d 10.255.1.9/32")
	})
}

func TestC2CLoggingEndpoint(t *testing.T) {
	f := newFixture(t, true, 3600)
	f.server.set(policyAB(8080))
	f.run(t)
	h := c2cLoggingHandler(f.policies)
	do := func(method, body string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/iptables-c2c-logging", strings.NewReader(body)))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := do("GET", ""); code != 200 || body != `{"enabled":false}` {
		t.Errorf("GET %d %s", code, body)
	}
	if code, body := do("PUT", "{"); code != 400 || body != `{ "error": "decoding request body as json" }` {
		t.Errorf("bad json %d %s", code, body)
	}
	if code, body := do("PUT", "{}"); code != 400 || body != `{ "error": "missing required key 'enabled'" }` {
		t.Errorf("missing key %d %s", code, body)
	}
	if code, body := do("PUT", `{"enabled":true}`); code != 200 || body != `{"enabled":true}` {
		t.Errorf("PUT %d %s", code, body)
	}
	waitFor(t, 2*time.Second, "LOG rules", func() bool { return strings.Contains(f.ipt.Dump(iptables.Filter), `"OK_0001_app-b "`) })
}

func TestForceEndpoints(t *testing.T) {
	f := newFixture(t, true, 3600)
	f.server.set(policyAB(8080))
	h := forceHandler(f.logger, f.policies, nil)
	do := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", path, nil))
		return rec.Code, strings.TrimSpace(rec.Body.String())
	}
	if code, body := do("/force-policy-poll-cycle"); code != 200 || body != "" || !f.accepts(t, 8080) {
		t.Errorf("force: %d %q", code, body)
	}
	f.server.fail(errors.New("boom"))
	if code, body := do("/force-policy-poll-cycle"); code != 500 || body != "failed to force policy poll cycle: get-rules: failed to get policies: boom" {
		t.Errorf("failed force: %d %q", code, body)
	}
	// ASG syncing disabled (no syncer).
	for _, p := range []string{"/force-asgs-for-container?container=h1", "/force-orphaned-asgs-cleanup?container=h1"} {
		if code, body := do(p); code != http.StatusMethodNotAllowed || body != "ASG syncing has been disabled administratively" {
			t.Errorf("%s: %d %q", p, code, body)
		}
	}
}
