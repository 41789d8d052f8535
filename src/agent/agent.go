package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/netman-release/netman/src/lifecycle"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
)

// Metric names: upstream's, plus netman's failure counters.
const (
	MetricEnforce           = "iptablesEnforceTime"
	MetricTotalPoll         = "totalPollTime"
	MetricContainerMetadata = "containerMetadataTime"
	MetricPolicyServerPoll  = "policyServerPollTime"
	MetricASGEnforce        = "asgIptablesEnforceTime"
	MetricASGCleanup        = "asgIptablesCleanupTime"
	MetricASGTotalPoll      = "asgTotalPollTime"
	MetricASGServerPoll     = "policyServerASGPollTime"
	// netman counters: failed policy cycles (the rules stay as they were),
	// failed long-polls, failed ASG polls.
	MetricPolicyCycleFailures = "policyCycleFailures"
	MetricLongPollFailures    = "policyLongPollFailures"
	MetricASGPollFailures     = "asgPollFailures"
	// MetricASGLongPollFailures counts failed long-polls of
	// security_groups_last_updated.
	MetricASGLongPollFailures = "asgLongPollFailures"
)

// Retry backoff after a failed cycle or long-poll.
const (
	minBackoff      = 500 * time.Millisecond
	maxLongPollWait = 30 * time.Second
	// longPollGap is the least time between two long-polls that came back
	// without a change, so a misbehaving server cannot make us spin.
	longPollGap = 100 * time.Millisecond
)

// PolicySource is the part of the policy-server-internal client the policy
// cycle needs.
type PolicySource interface {
	Policies(ctx context.Context, ids ...string) ([]c2c.Policy, error)
	LastUpdated(ctx context.Context) (int64, bool, error)
	WaitLastUpdated(ctx context.Context, since int64, wait, grace time.Duration) (int64, bool, error)
	CreateOrGetTag(ctx context.Context, id, groupType string) (string, error)
}

// Agent runs the policy cycle and serves the force and debug endpoints.
type Agent struct {
	logger lager.Logger
	// Upstream's sessions: the planner's "rules-updater" and the poll
	// cycle's "policy-cycle", made once so every line of one shares its id.
	updaterLog, cycleLog lager.Logger
	cfg                  Config
	store                *metadata.Store
	client               PolicySource
	c2c                  *c2c.Enforcer
	asg                  ASG // nil when ASG syncing is disabled
	sender               *metrics.Sender
	jitter               float64

	logging atomic.Bool // iptables_c2c_logging, togglable at runtime

	cycleMu      sync.Mutex
	applied      int64 // policies_last_updated value whose policies are enforced
	lastRules    int   // rules in the last enforced set, for the log
	storeVersion int   // metadata store version at the last good cycle
	good         bool  // a cycle has succeeded and nothing asked for another

	seen      atomic.Int64 // newest policies_last_updated observed
	again     atomic.Bool  // run a cycle even if nothing seems changed
	lpOffered atomic.Bool  // the server offers long-poll
	lpHealthy atomic.Bool  // a long-poll is running and answering
	lpStarted atomic.Bool
	kick      chan struct{}

	asgv asgVersions // security_groups_last_updated tracking (asgpoll.go)
}

// New returns an agent. asg may be nil (ASG syncing disabled).
func New(logger lager.Logger, cfg Config, store *metadata.Store, client PolicySource, driver c2c.Driver, asg ASG, sender *metrics.Sender) *Agent {
	a := &Agent{
		logger: logger, cfg: cfg, store: store, client: client,
		updaterLog: logger.Session("rules-updater"), cycleLog: logger.Session("policy-cycle"),
		c2c: c2c.NewEnforcer(driver), asg: asg, sender: sender,
		jitter: 0.1, kick: make(chan struct{}, 1),
	}
	a.asgv.init(client)
	a.logging.Store(cfg.IPTablesC2CLogging)
	return a
}

func (a *Agent) poke() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// Containers reads the metadata store: the containers with a policy group
// id, sorted by handle descending (upstream's order).
func (a *Agent) Containers(ctx context.Context) ([]c2c.Container, error) {
	all, err := a.store.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	logger := a.updaterLog
	out := make([]c2c.Container, 0, len(all))
	for _, c := range all {
		ports, _ := c.Metadata["ports"].(string)
		if ports == "" {
			logger.Debug("container-metadata-policy-group-id", lager.Data{"container_handle": c.Handle, "message": missingPorts})
		}
		app, _ := c.Metadata["policy_group_id"].(string)
		if app == "" {
			logger.Debug("container-metadata-policy-group-id", lager.Data{"container_handle": c.Handle, "message": missingPolicyGroupID})
			continue
		}
		space, _ := c.Metadata["space_id"].(string)
		workload, _ := c.Metadata["container_workload"].(string)
		out = append(out, c2c.Container{Handle: c.Handle, IP: c.IP, AppID: app, SpaceID: space, Ports: ports, Workload: workload})
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

// PolicyCycle reads the containers and their policies, plans the rules and
// enforces them. Errors carry upstream's "get-rules: " and "enforce: "
// prefixes, which its poll-cycle lines and force endpoint show. Any
// failure leaves the enforced rules as they were.
func (a *Agent) PolicyCycle(ctx context.Context) error {
	a.cycleMu.Lock()
	defer a.cycleMu.Unlock()
	start := time.Now()
	remote := a.seen.Load()
	again := a.again.Swap(false)
	version, verr := a.store.Version()

	containers, err := a.Containers(ctx)
	if err != nil {
		return a.failed(again, fmt.Errorf("get-rules: reading container metadata: %w", err))
	}
	a.sender.SendDuration(MetricContainerMetadata, time.Since(start))

	pollStart := time.Now()
	var policies []c2c.Policy
	if ids := guids(containers); len(ids) > 0 {
		if policies, err = a.client.Policies(ctx, ids...); err != nil {
			return a.failed(again, fmt.Errorf("get-rules: failed to get policies: %w", err))
		}
	}
	var ingressTag string
	if a.cfg.EnableOverlayIngressRules {
		if ingressTag, err = a.client.CreateOrGetTag(ctx, "INGRESS_ROUTER", "router"); err != nil {
			return a.failed(again, fmt.Errorf("get-rules: failed to get ingress tags: %w", err))
		}
	}
	a.sender.SendDuration(MetricPolicyServerPoll, time.Since(pollStart))

	want, err := c2c.Plan(c2c.Inputs{
		Containers: containers, Policies: policies, IngressTag: ingressTag,
		Logging: a.logging.Load(), AcceptedUDPLogsPerSec: a.cfg.IPTablesAcceptedUDPLogsPerSec,
		DisableNetworkPolicy: a.cfg.DisableContainerNetworkPolicy, OverlayNetwork: a.cfg.OverlayNetwork,
	}, func(msg string, data map[string]any) { a.logger.Info(msg, lager.Data(data)) })
	if err != nil {
		return a.failed(again, fmt.Errorf("get-rules: planning rules: %w", err))
	}

	enforceStart := time.Now()
	res, err := a.c2c.Enforce(ctx, want)
	if err != nil {
		return a.failed(again, fmt.Errorf("enforce: %w", err))
	}
	if res.Changed {
		// Upstream's debug line for a changed rule set (without the rule
		// lists themselves, which run to megabytes on a busy cell).
		a.cycleLog.Debug("poll-cycle", lager.Data{
			"message": "updating iptables rules", "num old rules": a.lastRules, "num new rules": len(want),
		})
		a.lastRules = len(want)
		a.sender.SendDuration(MetricEnforce, time.Since(enforceStart))
		a.logger.Info("rules-enforced", lager.Data{"chain": res.Chain, "rules": len(want), "added": res.Added, "removed": res.Removed, "full": res.Full, "took": time.Since(enforceStart).String()})
	}
	a.sender.SendDuration(MetricTotalPoll, time.Since(start))
	a.applied = remote
	if verr == nil {
		a.storeVersion = version
	}
	a.good = verr == nil
	return nil
}

func (a *Agent) failed(again bool, err error) error {
	a.good = false
	if again {
		a.again.Store(true)
	}
	a.sender.IncrementCounter(MetricPolicyCycleFailures)
	return err
}

// needCycle reports whether the policies or the containers changed since
// the last good cycle, or a cycle was asked for.
func (a *Agent) needCycle() bool {
	if a.again.Load() {
		return true
	}
	a.cycleMu.Lock()
	defer a.cycleMu.Unlock()
	if !a.good || a.applied == 0 || a.seen.Load() != a.applied {
		return true
	}
	v, err := a.store.Version()
	return err != nil || v != a.storeVersion
}

// plainPoll reads policies_last_updated the upstream way. On failure the
// cycle runs anyway (as upstream), and fails static if the server is down.
func (a *Agent) plainPoll(ctx context.Context) {
	v, offered, err := a.client.LastUpdated(ctx)
	if err != nil {
		a.cycleLog.Error("error-getting-policies-last-updated", err)
		a.again.Store(true)
		return
	}
	a.seen.Store(v)
	if offered && a.cfg.longPollWait() > 0 {
		a.lpOffered.Store(true)
		if a.lpStarted.CompareAndSwap(false, true) {
			go a.longPollLoop(ctx)
		}
	}
}

// PollLoop runs the policy cycle whenever something changed: at once on a
// long-poll answer or a forced refresh, else every poll_interval (plus
// jitter) after checking policies_last_updated — plainly only when no
// long-poll is healthy — and the metadata store's version. A failed cycle
// is retried with exponential backoff up to poll_interval.
func (a *Agent) PollLoop(ctx context.Context) error {
	interval := a.cfg.pollInterval()
	backoff := time.Duration(0)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-a.kick:
		case <-timer.C:
			if !a.lpHealthy.Load() {
				a.plainPoll(ctx)
			}
		}
		if ctx.Err() != nil {
			return nil
		}
		var err error
		if a.needCycle() {
			err = a.PolicyCycle(ctx)
		} else {
			a.cycleMu.Lock()
			applied := a.applied
			a.cycleMu.Unlock()
			a.cycleLog.Debug("skipping-poll-cycle", lager.Data{"last-updated-remotely": a.seen.Load(), "last-updated-locally": applied})
		}
		next := interval + time.Duration(rand.Float64()*a.jitter*float64(interval))
		if err != nil {
			a.logger.Error("poll-cycle", err) // upstream's poller line
			backoff = min(max(2*backoff, minBackoff), interval)
			next = backoff
		} else {
			backoff = 0
		}
		timer.Reset(next)
	}
}

// longPollLoop parks a request on policies_last_updated and kicks the poll
// loop when the value changes. It ends when the server stops offering
// long-poll (the poll loop then polls plainly).
func (a *Agent) longPollLoop(ctx context.Context) {
	defer a.lpStarted.Store(false)
	a.longPoll(ctx, versionLongPoll{
		name: "long-poll", failures: MetricLongPollFailures, wait: a.client.WaitLastUpdated,
		seen: &a.seen, offered: &a.lpOffered, healthy: &a.lpHealthy, changed: a.poke,
	})
}

// versionLongPoll is one version endpoint to long-poll: how to wait on it,
// where the newest value goes, the flags the plain pollers consult, and
// whom to wake on a change.
type versionLongPoll struct {
	name     string // log message of failures; "<name>-not-offered" on fallback
	failures string // counter of failed long-polls
	wait     func(ctx context.Context, since int64, wait, grace time.Duration) (int64, bool, error)
	seen     *atomic.Int64
	offered  *atomic.Bool
	healthy  *atomic.Bool
	changed  func()
}

// longPoll runs one long-poll loop until ctx is done or the server stops
// offering long-poll. Failures back off exponentially up to the longest
// wait.
func (a *Agent) longPoll(ctx context.Context, p versionLongPoll) {
	defer p.healthy.Store(false)
	wait := min(a.cfg.longPollWait(), maxLongPollWait)
	grace := a.cfg.clientTimeout()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		since := p.seen.Load()
		t0 := time.Now()
		v, offered, err := p.wait(ctx, since, wait, grace)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			p.healthy.Store(false)
			a.sender.IncrementCounter(p.failures)
			backoff = min(max(2*backoff, minBackoff), maxLongPollWait)
			a.logger.Error(p.name, err, lager.Data{"retry-in": backoff.String()})
			if !lifecycle.Sleep(ctx, backoff) {
				return
			}
			continue
		}
		if !offered {
			p.healthy.Store(false)
			p.offered.Store(false)
			a.logger.Info(p.name+"-not-offered", lager.Data{"fallback": "plain polling"})
			return
		}
		backoff = 0
		p.healthy.Store(true)
		if v != since {
			p.seen.Store(v)
			p.changed()
		} else if time.Since(t0) < longPollGap && !lifecycle.Sleep(ctx, longPollGap) {
			return
		}
	}
}

// SetC2CLogging turns the OK_ LOG rules on or off; the change is enforced
// by a cycle run at once.
func (a *Agent) SetC2CLogging(on bool) {
	if a.logging.Swap(on) != on {
		a.again.Store(true)
		a.poke()
	}
}

// C2CLogging reports whether c2c accept logging is on.
func (a *Agent) C2CLogging() bool { return a.logging.Load() }

// ForceHandler serves upstream's force endpoints (any method).
func (a *Agent) ForceHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/force-policy-poll-cycle", func(w http.ResponseWriter, r *http.Request) {
		if err := a.PolicyCycle(r.Context()); err != nil {
			a.logger.Error("force-policy-poll-cycle", err)
			http.Error(w, "failed to force policy poll cycle: "+err.Error(), http.StatusInternalServerError)
			return
		}
	})
	asgEndpoint := func(name, fail, ok string, run func(ctx context.Context, handle string) error) {
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			if a.asg == nil {
				http.Error(w, "ASG syncing has been disabled administratively", http.StatusMethodNotAllowed)
				return
			}
			handle := r.URL.Query().Get("container")
			if handle == "" {
				http.Error(w, "no container specified", http.StatusBadRequest)
				return
			}
			if err := run(r.Context(), handle); err != nil {
				a.logger.Error(name, err, lager.Data{"container": handle})
				http.Error(w, fmt.Sprintf(fail, handle)+": "+err.Error(), http.StatusInternalServerError)
				return
			}
			_, _ = fmt.Fprintf(w, ok, handle)
		})
	}
	asgEndpoint("force-asgs-for-container", "failed to update asgs for container %s", "updated container %s", a.ASGForContainer)
	asgEndpoint("force-orphaned-asgs-cleanup", "failed to cleanup ASGs for container %s", "cleaned up ASGs for container %s", a.ASGCleanup)
	return mux
}

// C2CLoggingHandler is the debug server's /iptables-c2c-logging.
func (a *Agent) C2CLoggingHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.Method {
		case http.MethodGet:
		case http.MethodPut:
			var body struct {
				Enabled *bool `json:"enabled"`
			}
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{ "error": "decoding request body as json" }`))
				return
			}
			if body.Enabled == nil {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{ "error": "missing required key 'enabled'" }`))
				return
			}
			a.SetC2CLogging(*body.Enabled)
		default:
			w.Header().Set("Allow", "GET, PUT")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]bool{"enabled": a.logging.Load()})
	})
}
