package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/nft"
)

// c2cRules are the config values that shape the c2c rules.
type c2cRules struct {
	planner       c2c.Inputs // the planner's fixed inputs: UDP log rate, disabled policy, overlay
	ingressRouter bool       // enable_overlay_ingress_rules: plan the router's ingress accepts
	logging       bool       // iptables_c2c_logging at start
}

// policyCycle enforces the policies of the cell's containers in the vpa--
// chain. Its poller (members) runs Poll every poll_interval and when
// kicked; the force endpoint runs Sync.
type policyCycle struct {
	logger lager.Logger
	// Upstream's sessions: the planner's "rules-updater" and the poll
	// cycle's "policy-cycle", made once so every line of one shares its id.
	updaterLog, cycleLog lager.Logger
	store                *metadata.Store
	client               PolicySource
	enforcer             c2cBackend
	sender               *metrics.Sender
	rules                c2cRules
	stamp                *watcher // policies_last_updated
	kick                 kicker

	logging atomic.Bool // iptables_c2c_logging, toggled by the debug server

	mu       sync.Mutex // one cycle at a time: the poller and forced cycles
	good     bool       // the last cycle succeeded and read the store's version
	enforced inputs     // what the last successful cycle enforced
	// enforcedIDs are the guids the last successful cycle fetched
	// policies for (its long-polls' targets).
	enforcedIDs []string
	lastRules   int       // rules in the last enforced set, for the log
	lastPlan    *c2cPlan  // what the last successful cycle enforced
	lastRead    time.Time // when the enforcer last read the kernel
	// driftEvery is how often an otherwise idle poller re-reads the kernel
	// and puts back what was changed by hand (driftCheckInterval).
	driftEvery time.Duration

	// status is what the debug server's /c2c-enforced shows; its own lock,
	// so a request never waits for a running cycle.
	status cycleStatus
}

// cycleStatus is what the last cycles did: the planner's inputs of the
// last good one and when it finished, and the last attempt's time and
// error.
type cycleStatus struct {
	sync.Mutex
	in            c2c.Inputs
	stamp         int64
	good, attempt time.Time
	err           error
}

func (s *cycleStatus) succeeded(in c2c.Inputs, stamp int64) {
	now := time.Now()
	s.Lock()
	s.in, s.stamp, s.good, s.attempt, s.err = in, stamp, now, now, nil
	s.Unlock()
}

func (s *cycleStatus) failed(err error) {
	s.Lock()
	s.attempt, s.err = time.Now(), err
	s.Unlock()
}

// driftCheckInterval is how often the policy and ASG cycles read the
// kernel even when nothing changed, to put back rules changed by hand
// (docs/vxlan-policy-agent.md "Drift"). A read that finds the kernel right
// writes nothing; on nftables it costs about 1.5 s of CPU (1 s of it
// nft's) at 50,000 elements, so every 10 minutes keeps an idle agent well
// under 1 % of a core.
const driftCheckInterval = 10 * time.Minute

// inputs identify what a cycle enforces: the policies (by their
// policies_last_updated stamp), c2c logging and the containers (by the
// metadata store's version).
type inputs struct {
	policies int64
	logging  bool
	store    int
}

func newPolicyCycle(logger lager.Logger, sender *metrics.Sender, store *metadata.Store, client PolicySource, enforcer c2cBackend, rules c2cRules, lp longPollTiming) *policyCycle {
	kick := newKicker()
	c := &policyCycle{
		logger: logger, updaterLog: logger.Session("rules-updater"), cycleLog: logger.Session("policy-cycle"),
		store: store, client: client, enforcer: enforcer, sender: sender, rules: rules, kick: kick,
		driftEvery: driftCheckInterval,
		stamp:      newWatcher(logger, sender, "long-poll", MetricLongPollFailures, client.LastUpdated, client.WaitPolicies, lp, kick),
	}
	c.stamp.advance = c.advance
	c.logging.Store(rules.logging)
	return c
}

// members are the policies_last_updated watcher and the poller: Poll at
// once, then every interval plus up to jitter, at once when kicked (a
// long-polled change, c2c logging toggled), and after a failure again
// after 0.5 s, 1 s, 2 s, ... up to interval. Failed cycles are upstream's
// "poll-cycle" line on the root logger.
func (c *policyCycle) members(interval, jitter time.Duration) []lifecycle.Member {
	return []lifecycle.Member{
		{Name: "policy-watcher", Runner: lifecycle.Loop(c.stamp.Run)},
		{Name: "policy-poller", Runner: lifecycle.PollerWith(c.logger, "policy-poller", interval,
			lifecycle.PollOptions{Jitter: jitter, Kick: c.kick, RetryMin: minBackoff}, c.Poll)},
	}
}

// Poll is one tick: it reads policies_last_updated (plainly, the upstream
// way, only when no long-poll is healthy) and runs the cycle when the
// policies, the containers or c2c logging changed since the last good
// cycle. A failed plain read runs the cycle anyway (as upstream), which
// fails static if the server is down.
func (c *policyCycle) Poll(ctx context.Context) error {
	_, err := c.stamp.current(ctx)
	if err != nil {
		c.cycleLog.Error("error-getting-policies-last-updated", err)
	}
	if err == nil {
		if enforced, due := c.due(); !due {
			c.cycleLog.Debug("skipping-poll-cycle", lager.Data{"last-updated-remotely": c.stamp.seen.Load(), "last-updated-locally": enforced.policies})
			return c.checkDrift(ctx)
		}
	}
	return c.Sync(ctx)
}

// due reports whether a cycle is needed: none succeeded yet or the last
// failed, the policies' stamp is unknown or moved, c2c logging was
// toggled, or the metadata store changed (a container came or went).
func (c *policyCycle) due() (enforced inputs, due bool) {
	c.mu.Lock()
	enforced, good := c.enforced, c.good
	c.mu.Unlock()
	store, err := c.store.Version()
	now := inputs{policies: c.stamp.seen.Load(), logging: c.logging.Load(), store: store}
	return enforced, !good || err != nil || enforced.policies == 0 || now != enforced
}

// Sync reads the containers and their policies, plans the rules and
// enforces them. Errors carry upstream's "get-rules: " and "enforce: "
// prefixes, which its poll-cycle lines and force endpoint show. Any
// failure leaves the enforced rules as they were.
func (c *policyCycle) Sync(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	start := time.Now()
	in := inputs{policies: c.stamp.seen.Load(), logging: c.logging.Load()}
	var verr error
	in.store, verr = c.store.Version()

	containers, err := c.containers(ctx)
	if err != nil {
		return c.failed(fmt.Errorf("get-rules: reading container metadata: %w", err))
	}
	c.sender.SendDuration(MetricContainerMetadata, time.Since(start))

	pollStart := time.Now()
	var policies []c2c.Policy
	ids := guids(containers)
	if len(ids) > 0 {
		if policies, err = c.client.Policies(ctx, ids...); err != nil {
			return c.failed(fmt.Errorf("get-rules: failed to get policies: %w", err))
		}
	}
	var ingressTag string
	if c.rules.ingressRouter {
		if ingressTag, err = c.client.CreateOrGetTag(ctx, "INGRESS_ROUTER", "router"); err != nil {
			return c.failed(fmt.Errorf("get-rules: failed to get ingress tags: %w", err))
		}
	}
	c.sender.SendDuration(MetricPolicyServerPoll, time.Since(pollStart))

	plan := c.rules.planner
	plan.Containers, plan.Policies, plan.IngressTag, plan.Logging = containers, policies, ingressTag, in.logging
	want, err := c.enforcer.plan(plan, func(msg string, data map[string]any) { c.logger.Info(msg, lager.Data(data)) })
	if err != nil {
		return c.failed(fmt.Errorf("get-rules: planning rules: %w", err))
	}

	if c.driftEvery > 0 && time.Since(c.lastRead) >= c.driftEvery {
		c.enforcer.invalidate()
	}
	if err := c.enforce(ctx, want); err != nil {
		return c.failed(err)
	}
	c.sender.SendDuration(MetricTotalPoll, time.Since(start))
	c.enforced, c.enforcedIDs, c.good = in, ids, verr == nil
	c.status.succeeded(plan, in.policies)
	// Long-polls now wake only for changes to these guids' policies.
	c.stamp.setTargets(ids)
	return nil
}

// advance takes a long-poll's word that the policies of ids are the same
// at stamp to as at from: when the last cycle enforced them as of from,
// for exactly those guids, it now counts as enforced as of to, with no
// fetch. Otherwise it reports false and the stamp's move runs a cycle.
func (c *policyCycle) advance(from, to int64, ids []string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.good || c.enforced.policies != from || !slices.Equal(c.enforcedIDs, ids) {
		return false
	}
	c.enforced.policies = to
	c.status.Lock()
	c.status.stamp = to
	c.status.Unlock()
	return true
}

// enforce writes want through the backend. A failed write leaves the
// enforcer distrusting its memory: the retry reads the kernel and
// converges from what is there.
func (c *policyCycle) enforce(ctx context.Context, want c2cPlan) error {
	enforceStart := time.Now()
	res, err := c.enforcer.enforce(ctx, want)
	if err != nil {
		return fmt.Errorf("enforce: %w", err)
	}
	c.lastPlan = &want
	if res.Full {
		c.lastRead = enforceStart
	}
	if res.Changed {
		// Upstream's debug line for a changed rule set (without the rule
		// lists themselves, which run to megabytes on a busy cell).
		c.cycleLog.Debug("poll-cycle", lager.Data{
			"message": "updating iptables rules", "num old rules": c.lastRules, "num new rules": want.size,
		})
		c.lastRules = want.size
		c.sender.SendDuration(MetricEnforce, time.Since(enforceStart))
		c.logger.Info("rules-enforced", lager.Data{"chain": res.Chain, "rules": want.size, "added": res.Added, "removed": res.Removed, "full": res.Full, "took": time.Since(enforceStart).String()})
	}
	return nil
}

// checkDrift runs on polls that have nothing new to enforce: once every
// driftEvery it has the enforcer read the kernel and put the last enforced
// plan back, so rules changed by hand are repaired without a policy fetch.
// A kernel that is right costs the read and no write.
func (c *policyCycle) checkDrift(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.driftEvery <= 0 || c.lastPlan == nil || !c.good || time.Since(c.lastRead) < c.driftEvery {
		return nil
	}
	c.enforcer.invalidate()
	if err := c.enforce(ctx, *c.lastPlan); err != nil {
		return c.failed(err)
	}
	return nil
}

func (c *policyCycle) failed(err error) error {
	c.good = false
	c.status.failed(err)
	c.sender.IncrementCounter(MetricPolicyCycleFailures)
	return err
}

// SetC2CLogging turns the OK_ LOG rules on or off; the change is enforced
// by a cycle run at once.
func (c *policyCycle) SetC2CLogging(on bool) {
	if c.logging.Swap(on) != on {
		c.kick.kick()
	}
}

// containers reads the metadata store: the containers with a policy group
// id, sorted by handle descending (upstream's order).
func (c *policyCycle) containers(ctx context.Context) ([]c2c.Container, error) {
	all, err := c.store.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	logger := c.updaterLog
	out := make([]c2c.Container, 0, len(all))
	for _, m := range all {
		ports, _ := m.Metadata["ports"].(string)
		if ports == "" {
			logger.Debug("container-metadata-policy-group-id", lager.Data{"container_handle": m.Handle, "message": missingPorts})
		}
		app, _ := m.Metadata["policy_group_id"].(string)
		if app == "" {
			logger.Debug("container-metadata-policy-group-id", lager.Data{"container_handle": m.Handle, "message": missingPolicyGroupID})
			continue
		}
		space, _ := m.Metadata["space_id"].(string)
		workload, _ := m.Metadata["container_workload"].(string)
		out = append(out, c2c.Container{Handle: m.Handle, IP: m.IP, AppID: app, SpaceID: space, Ports: ports, Workload: workload})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Handle > out[j].Handle })
	logger.Debug("got-containers", lager.Data{"containers": loggedContainers(out)})
	return out, nil
}

// Upstream's debug texts for containers whose metadata lacks a key.
const (
	missingPorts         = "Container metadata is missing key ports. CloudController version may be out of date or apps may need to be restaged."
	missingPolicyGroupID = "Container metadata is missing key policy_group_id. CloudController version may be out of date or apps may need to be restaged."
)

// loggedContainer is a container as upstream's "got-containers" line
// shows it (its planner's struct, marshalled with Go's field names).
type loggedContainer struct {
	Handle, AppID, SpaceID, Ports, IP, Purpose string
}

func loggedContainers(cs []c2c.Container) []loggedContainer {
	out := make([]loggedContainer, len(cs))
	for i, c := range cs {
		out[i] = loggedContainer{Handle: c.Handle, AppID: c.AppID, SpaceID: c.SpaceID, Ports: c.Ports, IP: c.IP, Purpose: c.Workload}
	}
	return out
}

// guids is every app and space id of the containers, deduplicated.
func guids(cs []c2c.Container) []string {
	set := map[string]bool{}
	var out []string
	for _, c := range cs {
		for _, id := range []string{c.AppID, c.SpaceID} {
			if id != "" && !set[id] {
				set[id] = true
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// PolicyCycle is the agent's c2c policy cycle on the nftables backend,
// built as Run builds it (watcher, poller, planner, enforcer) but on a
// driver of the caller's: netman-fleet runs a thousand of them in one
// process, each on an nft.Fake.
type PolicyCycle struct {
	c        *policyCycle
	interval time.Duration
}

// NewPolicyCycle reads the containers from cfg.CNIDatastorePath and the
// policies through client, and enforces them through driver.
func NewPolicyCycle(logger lager.Logger, sender *metrics.Sender, cfg Config, client PolicySource, driver nft.Driver) *PolicyCycle {
	store := metadata.New(cfg.CNIDatastorePath)
	c := newPolicyCycle(logger, sender, store, client, newNFTC2C(driver), cfg.c2cRules(), cfg.longPoll())
	return &PolicyCycle{c: c, interval: cfg.pollInterval()}
}

// Members are the policy watcher and poller, as Run runs them.
func (p *PolicyCycle) Members() []lifecycle.Member {
	return p.c.members(p.interval, p.interval/10)
}
