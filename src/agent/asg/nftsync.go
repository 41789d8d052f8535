package asg

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
)

// NFTSyncer is the Syncer of the nftables backend: the same fetches,
// plans and app log notes, written by one NFTEnforcer into netman's table.
// It keeps every container's plan, so a forced sync of one container or
// the clean-up of one enforces the whole asg scope as a delta against the
// enforcer's memory: O(change), and no write when nothing changed. Its
// methods are serialised.
type NFTSyncer struct {
	logger  lager.Logger
	source  Source
	planner *Planner
	notify  func(Container)
	enf     *NFTEnforcer
	udp     int // iptables_accepted_udp_logs_per_sec

	mu      sync.Mutex
	synced  bool                    // a SyncAll succeeded: plans holds every container
	plans   map[string]NFTChainPlan // by handle: what the table should hold
	applied map[string]nftApplied   // by handle: the ruleset last applied, for notify
	// DriftEvery makes SyncAll re-read the table at most this often (0:
	// only after a failure); lastRead is when it last did.
	DriftEvery time.Duration
	lastRead   time.Time
}

// NewNFT returns an NFTSyncer writing through d. acceptedUDPLogsPerSec is
// iptables_accepted_udp_logs_per_sec (PlanNFT).
func NewNFT(logger lager.Logger, d nft.Driver, source Source, cfg Config, acceptedUDPLogsPerSec int, notify func(Container)) (*NFTSyncer, error) {
	p, err := NewPlanner(cfg)
	if err != nil {
		return nil, err
	}
	return &NFTSyncer{
		logger: logger, source: source, planner: p, notify: notify, enf: NewNFTEnforcer(d), udp: acceptedUDPLogsPerSec,
		plans: map[string]NFTChainPlan{}, applied: map[string]nftApplied{},
	}, nil
}

// SyncAll plans every container and makes the asg scope of the table hold
// exactly those plans: containers gone lose their objects in the same
// transaction. Every DriftEvery it reads the table first, so objects
// changed by hand are put back.
func (s *NFTSyncer) SyncAll(ctx context.Context, containers []Container) (Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	groups, err := s.fetch(ctx, containers, &st)
	if err != nil {
		return st, err
	}
	plans := s.split(s.planner.PlanNFT(containers, groups, s.udp), &st)
	s.plans = map[string]NFTChainPlan{}
	for _, p := range plans {
		s.plans[p.Container.Handle] = p
	}
	if s.DriftEvery > 0 && time.Since(s.lastRead) >= s.DriftEvery {
		s.enf.Invalidate()
	}
	start := time.Now()
	res, err := s.enforce(ctx, &st)
	st.EnforceTime = time.Since(start)
	if err != nil {
		return st, err
	}
	s.synced = true
	// Forget containers that are gone.
	for h := range s.applied {
		if _, ok := s.plans[h]; !ok {
			delete(s.applied, h)
		}
	}
	if res.Full {
		s.lastRead = start
	}
	return st, nil
}

// SyncContainers plans the given containers and enforces them beside
// every other container's last plan; nothing runs when their plans did not
// change. Before the first SyncAll the asg chains already in the table are
// kept as they are.
func (s *NFTSyncer) SyncContainers(ctx context.Context, containers []Container) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	groups, err := s.fetch(ctx, containers, &st)
	if err != nil {
		return err
	}
	changed := false
	for _, p := range s.split(s.planner.PlanNFT(containers, groups, s.udp), &st) {
		old, ok := s.plans[p.Container.Handle]
		if !ok || !samePlan(old, p) {
			changed = true
		}
		s.plans[p.Container.Handle] = p
	}
	if !changed {
		return nil
	}
	if !s.synced {
		names, err := s.enf.driver.ChainNames(ctx)
		if err != nil {
			return fmt.Errorf("enforce-asg: %w", err)
		}
		for n := range names {
			if h, ok := asgHandle(n); ok {
				if _, planned := s.plans[h]; !planned {
					s.plans[h] = NFTChainPlan{Container: Container{Handle: h}, Chain: n, Parent: nft.NetOutChain(h), Err: errNotSynced}
				}
			}
		}
	}
	_, err = s.enforce(ctx, &st)
	return err
}

// nftApplied is a container's ruleset as last enforced, and its text.
type nftApplied struct {
	rs   *nft.Ruleset
	text string
}

// errNotSynced marks the asg objects of containers the syncer has not
// planned yet (before its first SyncAll): they are left as they are.
var errNotSynced = errors.New("not synced yet")

// CleanupContainer removes a deleted container's asg objects
// (force-orphaned-asgs-cleanup); its netout--<handle>, when it still
// exists, goes back to the wrapper's reject.
func (s *NFTSyncer) CleanupContainer(ctx context.Context, handle string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.plans, handle)
	delete(s.applied, handle)
	if !s.synced {
		// Without every container's plan a whole-scope enforce would
		// remove the others: delete this one's objects by name.
		for h, p := range s.plans {
			if !errors.Is(p.Err, errNotSynced) {
				continue
			}
			delete(s.plans, h)
		}
		names, err := s.enf.driver.ChainNames(ctx)
		if err != nil {
			return fmt.Errorf("clean-up-orphaned-asg-chains: %w", err)
		}
		for n := range names {
			if h, ok := asgHandle(n); ok && h != handle {
				if _, planned := s.plans[h]; !planned {
					s.plans[h] = NFTChainPlan{Container: Container{Handle: h}, Chain: n, Parent: nft.NetOutChain(h), Err: errNotSynced}
				}
			}
		}
	}
	var st Stats
	if _, err := s.enforce(ctx, &st); err != nil {
		return fmt.Errorf("clean-up-orphaned-asg-chains: %w", err)
	}
	return nil
}

// enforce writes every plan in one transaction and queues the app log
// notes of the containers whose rules changed.
func (s *NFTSyncer) enforce(ctx context.Context, st *Stats) (NFTResult, error) {
	plans := make([]NFTChainPlan, 0, len(s.plans))
	for _, h := range slices.Sorted(maps.Keys(s.plans)) {
		plans = append(plans, s.plans[h])
	}
	res, err := s.enf.Enforce(ctx, plans)
	if err != nil {
		return res, fmt.Errorf("enforce-asg: %w", err)
	}
	absent := map[string]bool{}
	for _, h := range res.ParentAbsent {
		absent[h] = true
		delete(s.applied, h)
		s.logger.Debug("asg-parent-chain-missing", lager.Data{"container": h, "chain": nft.NetOutChain(h)})
	}
	if res.Changed() {
		s.logger.Info("asg-rules-enforced", lager.Data{
			"elements-added": res.ElementsAdded, "elements-deleted": res.ElementsDeleted,
			"chains-added": res.ChainsAdded, "chains-written": res.ChainsWritten, "chains-deleted": res.ChainsDeleted, "full": res.Full,
		})
	}
	var notes []Container
	for _, p := range plans {
		if p.Err != nil || absent[p.Container.Handle] {
			continue
		}
		last := s.applied[p.Container.Handle]
		if last.rs == p.Ruleset {
			continue // the same plan as last time (another container's sync)
		}
		text := p.Ruleset.String()
		s.applied[p.Container.Handle] = nftApplied{p.Ruleset, text}
		if last.text == text {
			continue
		}
		st.Updated++
		s.logger.Debug("asg-chain-applied", lager.Data{"container": p.Container.Handle, "chain": p.Chain})
		if lc := p.Container.LogConfig; lc != nil && lc.GUID != "" {
			notes = append(notes, p.Container)
		}
	}
	if s.notify != nil {
		for _, c := range notes {
			s.notify(c)
		}
	}
	return res, nil
}

func (s *NFTSyncer) fetch(ctx context.Context, containers []Container, st *Stats) ([]policy.SecurityGroup, error) {
	return fetchGroups(ctx, s.source, containers, st)
}

// split logs the plans' errors and dropped rules as Syncer.split does.
func (s *NFTSyncer) split(plans []NFTChainPlan, st *Stats) []NFTChainPlan {
	warned := map[string]bool{}
	for _, p := range plans {
		if p.Err != nil {
			s.logger.Error("rules-from-security-group-rules", p.Err, lager.Data{"container": p.Container.Handle})
			st.Skipped++
			continue
		}
		for _, w := range p.Warnings {
			if !warned[w] {
				warned[w] = true
				s.logger.Info("skipping-security-group-rule", lager.Data{"reason": w})
			}
		}
	}
	st.Planned = len(plans)
	return plans
}

func samePlan(a, b NFTChainPlan) bool {
	if (a.Err == nil) != (b.Err == nil) || a.Chain != b.Chain {
		return false
	}
	if a.Err != nil {
		return a.Err.Error() == b.Err.Error()
	}
	return a.Ruleset.String() == b.Ruleset.String()
}
