// Package asg is vxlan-policy-agent's dynamic ASG sync (spec §5.7): it owns
// the filter chains matching ^c?asg-[A-Za-z0-9]+ and the contents of the
// wrapper's netout--<handle> chains once a container has an asg chain.
//
// For every container with a space, the Planner turns the security groups
// of its space and lifecycle (staging, or running for app and task) into
// upstream's asg-<handle digest> chain: converted ASG rules, deny networks,
// connection limit and state rules reversed above the DENY_ log and REJECT
// defaults. The Syncer applies plans so the kernel ends in upstream's shape
// — asg-X holding exactly the plan and netout--H exactly [-j asg-X, REJECT]
// — but each batch in one iptables-restore transaction instead of
// upstream's candidate chain and rename:
//
//   - SyncAll (the ASG poller): one read of the filter table, every
//     container's chains compared with its plan (so chains that drifted are
//     repaired too), and everything that differs plus the removal of
//     orphaned asg chains (and of jump targets such as netout--H--log whose
//     netout chain is gone) written in one transaction. A poll with no
//     change reads once and writes nothing. If the transaction fails, the
//     containers whose plan changed are applied one by one and the
//     orphans removed separately, so one bad container does not hold up
//     the others.
//   - SyncContainers (/force-asgs-for-container): the given containers,
//     skipped without any iptables call when their plan equals the cache.
//   - CleanupContainer (/force-orphaned-asgs-cleanup): removes asg-X and
//     casg-X of one handle and their unused jump targets.
//
// Containers whose rules do not convert (a destination that does not
// parse) are skipped with an error logged and their chains are left as
// they are (fail static; upstream flushes them during cleanup). A container
// whose netout--H does not exist is skipped (gone, or not set up yet).
//
// The agent wires it: New with the iptables driver, a Source over the
// internal API client, and a notify func emitting the app log "Security
// group rules were updated" (called, as upstream, whenever a container's
// applied rules differ from what this process last applied, so once per
// container after a restart); SyncAll returns the durations for
// policyServerASGPollTime, asgIptablesEnforceTime and asgIptablesCleanupTime.
package asg

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
)

// Driver is the part of the iptables driver the Syncer uses
// (*iptables.Driver, *iptablestest.Tables).
type Driver interface {
	Update(ctx context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error)
}

// Source fetches security groups (the internal API client, following
// "next" pages). spaceGUIDs is never empty.
type Source interface {
	SecurityGroups(ctx context.Context, spaceGUIDs []string) ([]policy.SecurityGroup, error)
}

// Stats describes one SyncAll, for upstream's metrics. Enforcement and
// cleanup share one transaction, so EnforceTime is its read, planning and
// write, and CleanupTime the part of the planning that finds and removes
// orphans (both measured separately only when the fallback runs).
type Stats struct {
	PolicyServerPollTime time.Duration // policyServerASGPollTime
	EnforceTime          time.Duration // asgIptablesEnforceTime
	CleanupTime          time.Duration // asgIptablesCleanupTime
	Planned              int           // containers with an asg chain planned
	Skipped              int           // containers skipped: rules that do not convert
	Updated              int           // containers whose chains were written
	Removed              []string      // chains removed (orphans, upstream candidates, unused log chains)
}

// Syncer applies security groups to containers' asg chains. Its methods
// are serialised.
type Syncer struct {
	logger  lager.Logger
	driver  Driver
	source  Source
	planner *Planner
	notify  func(Container)

	mu    sync.Mutex
	cache map[string]applied // by parent chain
}

type applied struct {
	chain string
	rules []iptables.Rule
}

// New returns a Syncer. notify, if not nil, is called (under the Syncer's
// lock, so it must not call back) for every container whose rules were
// applied and that has a log_config guid.
func New(logger lager.Logger, driver Driver, source Source, cfg Config, notify func(Container)) (*Syncer, error) {
	p, err := NewPlanner(cfg)
	if err != nil {
		return nil, err
	}
	return &Syncer{
		logger: logger, driver: driver, source: source, planner: p, notify: notify,
		cache: map[string]applied{},
	}, nil
}

// SyncAll is the ASG poll: it syncs every container's asg chain and removes
// the asg chains no container wants. Containers are skipped, not failed,
// when their rules do not convert or their netout chain does not exist;
// the error reports containers whose chains could not be written and
// failed cleanups (with Stats filled as far as the poll got).
func (s *Syncer) SyncAll(ctx context.Context, containers []Container) (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	groups, err := s.fetch(ctx, containers, &st)
	if err != nil {
		return st, err
	}
	plans := s.planner.Plan(containers, groups)
	good, bad := s.split(plans)
	st.Planned, st.Skipped = len(plans), len(bad)
	var notes []Container
	var errs []error

	// One read, one write: every container is compared with the kernel
	// (so drift is repaired too) and the orphans go in the same
	// transaction.
	start := time.Now()
	failed := map[string]bool{}
	check, protect := good, bad
	res, err := s.apply(ctx, check, protect, true)
	st.EnforceTime = time.Since(start) - res.cleanupPlanning
	st.CleanupTime = res.cleanupPlanning
	if err != nil && ctx.Err() == nil {
		// Apply what changed container by container, so one bad container
		// does not hold up the others, then clean up around everything.
		s.logger.Error("enforce-asg-poll", err, lager.Data{"containers": len(good)})
		var changed []*ChainPlan
		for _, p := range good {
			if !s.cached(p) {
				changed = append(changed, p)
			}
		}
		if len(changed) > 0 {
			errs = append(errs, s.enforce(ctx, changed, failed, &st, &notes)...)
		}
		st.EnforceTime = time.Since(start)
		start = time.Now()
		check, protect = nil, append(append([]*ChainPlan(nil), good...), bad...)
		res, err = s.apply(ctx, nil, protect, true)
		st.CleanupTime = time.Since(start)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("enforce-asg: %w", err))
	} else {
		for i, p := range check {
			if res.outcomes[i] == outChanged && s.cached(p) {
				s.logger.Info("repaired-asg-chain", lager.Data{"container": p.Container.Handle, "chain": p.Chain})
			}
		}
		errs = append(errs, s.record(check, res, failed, &st, &notes)...)
		// Forget containers that are gone.
		keep := map[string]bool{}
		for i, p := range check {
			if res.outcomes[i] != outParentAbsent {
				keep[p.Parent] = true
			}
		}
		for _, p := range protect {
			if res.present[p.Parent] {
				keep[p.Parent] = true
			}
		}
		for parent := range s.cache {
			if !keep[parent] {
				delete(s.cache, parent)
			}
		}
		st.Removed = append(st.Removed, res.deleted...)
		if len(res.deleted) > 0 {
			s.logger.Info("deleted-orphaned-chains", lager.Data{"chains": res.deleted})
		}
		if len(res.kept) > 0 {
			s.logger.Info("orphaned-chains-still-referenced", lager.Data{"chains": res.kept})
		}
	}
	s.send(notes)
	return st, errors.Join(errs...)
}

// SyncContainers syncs the asg chains of the given containers (the force
// endpoint after a container is created). A container without a space or
// without a netout chain is skipped; nothing touches iptables when every
// plan equals what was last applied.
func (s *Syncer) SyncContainers(ctx context.Context, containers []Container) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	groups, err := s.fetch(ctx, containers, &st)
	if err != nil {
		return err
	}
	good, _ := s.split(s.planner.Plan(containers, groups))
	var changed []*ChainPlan
	for _, p := range good {
		if !s.cached(p) {
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return nil
	}
	var notes []Container
	errs := s.enforce(ctx, changed, map[string]bool{}, &st, &notes)
	s.send(notes)
	return errors.Join(errs...)
}

// CleanupContainer removes the asg chains of a deleted container: asg-X and
// an upstream candidate casg-X (the jump from its netout chain if that
// still exists, and jump targets such as netout--H--log that nothing else
// uses). A chain another container's netout chain jumps to is left alone.
func (s *Syncer) CleanupContainer(ctx context.Context, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	parent := rules.Prefix("netout", handle)
	delete(s.cache, parent)
	var deleted, kept []string
	_, err := s.driver.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		b := newBuilder(s.planner.cfg.Family, cur)
		b.removeChain(rules.ASGChain(handle), parent)
		b.removeChain(rules.ASGCandidateChain(handle), parent)
		deleted, kept = b.finish()
		return b.tx, nil
	})
	if err != nil {
		return fmt.Errorf("clean-up-orphaned-asg-chains: %w", err)
	}
	if len(deleted) > 0 {
		s.logger.Debug("deleted-asg-chains", lager.Data{"container": handle, "chains": deleted})
	}
	if len(kept) > 0 {
		s.logger.Info("asg-chains-still-referenced", lager.Data{"container": handle, "chains": kept})
	}
	return nil
}

func (s *Syncer) fetch(ctx context.Context, containers []Container, st *Stats) ([]policy.SecurityGroup, error) {
	return fetchGroups(ctx, s.source, containers, st)
}

// fetchGroups fetches the security groups of the containers' spaces
// (none without spaces), timing the fetch for policyServerASGPollTime.
func fetchGroups(ctx context.Context, source Source, containers []Container, st *Stats) ([]policy.SecurityGroup, error) {
	spaces := SpaceGUIDs(containers)
	if len(spaces) == 0 {
		return nil, nil
	}
	start := time.Now()
	groups, err := source.SecurityGroups(ctx, spaces)
	st.PolicyServerPollTime = time.Since(start)
	if err != nil {
		return nil, fmt.Errorf("get-asg-rules: failed to get security groups: %w", err)
	}
	return groups, nil
}

// split logs skipped containers and dropped rules and returns the plans to
// apply and the skipped ones.
func (s *Syncer) split(plans []ChainPlan) (good, bad []*ChainPlan) {
	warned := map[string]bool{}
	for i := range plans {
		p := &plans[i]
		if p.Err != nil {
			s.logger.Error("rules-from-security-group-rules", p.Err, lager.Data{"container": p.Container.Handle})
			bad = append(bad, p)
			continue
		}
		for _, w := range p.Warnings {
			if !warned[w] {
				warned[w] = true
				s.logger.Info("skipping-security-group-rule", lager.Data{"reason": w})
			}
		}
		good = append(good, p)
	}
	return good, bad
}

func (s *Syncer) cached(p *ChainPlan) bool {
	c, ok := s.cache[p.Parent]
	return ok && c.chain == p.Chain && slices.Equal(c.rules, p.Rules)
}

// enforce applies plans in one transaction, or one transaction per
// container when the batch fails.
func (s *Syncer) enforce(ctx context.Context, plans []*ChainPlan, failed map[string]bool, st *Stats, notes *[]Container) []error {
	res, err := s.apply(ctx, plans, nil, false)
	if err == nil {
		st.Removed = append(st.Removed, res.deleted...)
		return s.record(plans, res, failed, st, notes)
	}
	if len(plans) == 1 || ctx.Err() != nil {
		for _, p := range plans {
			failed[p.Parent] = true
		}
		return []error{fmt.Errorf("enforce-asg: %w", err)}
	}
	s.logger.Error("enforce-asg-batch", err, lager.Data{"containers": len(plans)})
	var errs []error
	for _, p := range plans {
		one := []*ChainPlan{p}
		res, err := s.apply(ctx, one, nil, false)
		if err != nil {
			failed[p.Parent] = true
			errs = append(errs, fmt.Errorf("enforce-asg: container %s: %w", p.Container.Handle, err))
			continue
		}
		st.Removed = append(st.Removed, res.deleted...)
		errs = append(errs, s.record(one, res, failed, st, notes)...)
	}
	return errs
}

type applyResult struct {
	outcomes []outcome // per plan
	errs     []error   // per plan
	present  map[string]bool
	deleted  []string
	kept     []string
	// cleanupPlanning is the time spent finding and planning the removal
	// of orphans (the part of the transaction that is upstream's cleanup).
	cleanupPlanning time.Duration
}

// apply runs one transaction on the filter table: it syncs plans, and with
// cleanup removes every managed chain that is neither planned nor
// protected (the chains of skipped containers that still exist).
func (s *Syncer) apply(ctx context.Context, plans, protect []*ChainPlan, cleanup bool) (applyResult, error) {
	var res applyResult
	_, err := s.driver.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		res = applyResult{outcomes: make([]outcome, len(plans)), errs: make([]error, len(plans)), present: map[string]bool{}}
		b := newBuilder(s.planner.cfg.Family, cur)
		desired := map[string]bool{}
		for i, p := range plans {
			res.outcomes[i], res.errs[i] = b.sync(p)
			if res.outcomes[i] != outParentAbsent {
				desired[p.Chain] = true
			}
			if res.outcomes[i] == outFailed {
				desired["c"+p.Chain] = true
			}
		}
		if cleanup {
			t0 := time.Now()
			defer func() { res.cleanupPlanning += time.Since(t0) }()
			for _, p := range protect {
				if cur.Has(p.Parent) {
					res.present[p.Parent] = true
					desired[p.Chain] = true
					desired["c"+p.Chain] = true
				}
			}
			for _, name := range cur.ChainNames(managedChain.MatchString) {
				if !desired[name] {
					b.removeChain(name, "")
				}
			}
		}
		res.deleted, res.kept = b.finish()
		return b.tx, nil
	})
	return res, err
}

// record updates the cache after a successful apply and queues app logs.
func (s *Syncer) record(plans []*ChainPlan, res applyResult, failed map[string]bool, st *Stats, notes *[]Container) []error {
	var errs []error
	for i, p := range plans {
		switch res.outcomes[i] {
		case outParentAbsent:
			delete(s.cache, p.Parent)
			s.logger.Debug("asg-parent-chain-missing", lager.Data{"container": p.Container.Handle, "chain": p.Parent})
		case outFailed:
			failed[p.Parent] = true
			delete(s.cache, p.Parent)
			errs = append(errs, fmt.Errorf("enforce-asg: %w", res.errs[i]))
		case outInSync, outChanged:
			if res.outcomes[i] == outChanged {
				st.Updated++
			}
			if s.cached(p) {
				continue
			}
			s.cache[p.Parent] = applied{chain: p.Chain, rules: p.Rules}
			s.logger.Debug("asg-chain-applied", lager.Data{"container": p.Container.Handle, "chain": p.Chain, "rules": len(p.Rules)})
			if lc := p.Container.LogConfig; lc != nil && lc.GUID != "" {
				*notes = append(*notes, p.Container)
			}
		}
	}
	return errs
}

func (s *Syncer) send(notes []Container) {
	if s.notify == nil {
		return
	}
	for _, c := range notes {
		s.notify(c)
	}
}
