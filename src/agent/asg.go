package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/asg"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/nft"
)

// asgConfig is the planner's part of the agent's config, the same for both
// backends.
func asgConfig(cfg Config) (asg.Config, error) {
	v6 := cfg.ipv6()
	deny, err := rules.ParseDenyNetworksDual(cfg.DenyNetworks.Always, cfg.DenyNetworks.Running, cfg.DenyNetworks.Staging, v6.Enabled())
	if err != nil {
		return asg.Config{}, err
	}
	o := cfg.OutboundConnections
	return asg.Config{
		ASGLogging: cfg.IPTablesASGLogging, DeniedLogsPerSec: cfg.IPTablesDeniedLogsPerSec, Deny: deny,
		Conn:                          rules.OutConn{Limit: o.Limit, Logging: o.Logging, DryRun: o.DryRun, Burst: o.Burst, RatePerSec: o.RatePerSec},
		DisableContainerNetworkPolicy: cfg.DisableContainerNetworkPolicy, OverlayNetwork: cfg.OverlayNetwork,
		IPv6OverlayNetwork: v6.String(),
	}, nil
}

// newASGSyncer builds the syncer from the agent's config: on a dual-stack
// cell, one for iptables and one for ip6tables (driver6), the chains of the
// same names in each family's tables.
func newASGSyncer(logger lager.Logger, cfg Config, driver, driver6 asg.Driver, source asg.Source, sender *metrics.Sender) (ASG, error) {
	c, err := asgConfig(cfg)
	if err != nil {
		return nil, err
	}
	s4, err := asg.New(logger, driver, source, c, appLogNotifier(sender))
	if err != nil || c.IPv6OverlayNetwork == "" {
		return s4, err
	}
	c.Family = iptables.IPv6
	// The app log line "Security group rules were updated" is the IPv4
	// syncer's alone: one line per change, as on an IPv4-only cell.
	s6, err := asg.New(logger.Session("ipv6"), driver6, source, c, nil)
	if err != nil {
		return nil, err
	}
	return dualASG{s4, s6}, nil
}

// dualASG runs a dual-stack cell's two iptables syncers, IPv4 first. The
// security groups are fetched once per poll: both read through the
// agent's group cache.
type dualASG struct{ v4, v6 *asg.Syncer }

// SyncAll syncs both families; the stats are the sums (upstream's
// metrics then time the whole ASG enforcement of the cell).
func (d dualASG) SyncAll(ctx context.Context, containers []asg.Container) (asg.Stats, error) {
	st, err4 := d.v4.SyncAll(ctx, containers)
	st6, err6 := d.v6.SyncAll(ctx, containers)
	st.EnforceTime += st6.EnforceTime
	st.CleanupTime += st6.CleanupTime
	st.Updated += st6.Updated
	st.Removed = append(st.Removed, st6.Removed...)
	if err6 != nil {
		err6 = fmt.Errorf("ip6tables: %w", err6)
	}
	return st, errors.Join(err4, err6)
}

// SyncContainers syncs the containers in both families.
func (d dualASG) SyncContainers(ctx context.Context, containers []asg.Container) error {
	err4 := d.v4.SyncContainers(ctx, containers)
	err6 := d.v6.SyncContainers(ctx, containers)
	if err6 != nil {
		err6 = fmt.Errorf("ip6tables: %w", err6)
	}
	return errors.Join(err4, err6)
}

// CleanupContainer removes the container's asg chains in both families.
func (d dualASG) CleanupContainer(ctx context.Context, handle string) error {
	err4 := d.v4.CleanupContainer(ctx, handle)
	err6 := d.v6.CleanupContainer(ctx, handle)
	if err6 != nil {
		err6 = fmt.Errorf("ip6tables: %w", err6)
	}
	return errors.Join(err4, err6)
}

// newNFTASGSyncer is newASGSyncer for the nftables backend.
func newNFTASGSyncer(logger lager.Logger, cfg Config, driver nft.Driver, source asg.Source, sender *metrics.Sender) (*asg.NFTSyncer, error) {
	c, err := asgConfig(cfg)
	if err != nil {
		return nil, err
	}
	return asg.NewNFT(logger, driver, source, c, cfg.IPTablesAcceptedUDPLogsPerSec, appLogNotifier(sender))
}

// ASG is the dynamic security group syncer (package asg).
type ASG interface {
	SyncAll(ctx context.Context, containers []asg.Container) (asg.Stats, error)
	SyncContainers(ctx context.Context, containers []asg.Container) error
	CleanupContainer(ctx context.Context, handle string) error
}

// asgCycle applies the containers' security groups: the full sync its
// poller runs every asg_poll_interval and whenever the long-polled
// security_groups_last_updated moves (asgpoll.go), and the force
// endpoints' syncs of one container.
type asgCycle struct {
	logger lager.Logger
	sender *metrics.Sender
	store  *metadata.Store
	syncer ASG
	cache  *groupCache // the syncer's source
	stamp  *watcher    // security_groups_last_updated
	kick   kicker

	notServed bool // the server answered 404 for the stamp (logged once); the poller's alone
}

// newASGCycle returns the cycle of syncer, which reads the security
// groups through cache; stamps reads security_groups_last_updated.
func newASGCycle(logger lager.Logger, sender *metrics.Sender, store *metadata.Store, syncer ASG, cache *groupCache, stamps ASGVersionSource, lp longPollTiming) *asgCycle {
	kick := newKicker()
	return &asgCycle{
		logger: logger, sender: sender, store: store, syncer: syncer, cache: cache, kick: kick,
		stamp: newWatcher(logger, sender, "asg-long-poll", MetricASGLongPollFailures,
			stamps.SecurityGroupsLastUpdated, untargeted(stamps.WaitSecurityGroupsLastUpdated), lp, kick),
	}
}

// members are the security_groups_last_updated watcher and the poller:
// Sync at once, then every interval plus up to jitter, and at once when
// the long-polled stamp moves. Failures are logged as upstream's poller
// logs them (asg-poller.poll-cycle) and retried at the next tick.
func (c *asgCycle) members(interval, jitter time.Duration) []lifecycle.Member {
	return []lifecycle.Member{
		{Name: "asg-watcher", Runner: lifecycle.Loop(c.stamp.Run)},
		{Name: "asg-poller", Runner: lifecycle.PollerWith(c.logger.Session("asg-poller"), "asg-poller", interval,
			lifecycle.PollOptions{Jitter: jitter, Kick: c.kick}, c.Sync)},
	}
}

// containers reads the metadata store for the ASG syncer: every
// container (not only those with a policy group), or the given handles.
// A log_config that does not decode is logged and ignored: it only feeds
// the app log line, and must not cost the container its egress rules.
func (c *asgCycle) containers(ctx context.Context, handles ...string) ([]asg.Container, error) {
	all, err := c.store.ReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading container metadata: %w", err)
	}
	want := map[string]bool{}
	for _, h := range handles {
		want[h] = true
	}
	var out []asg.Container
	for _, m := range all {
		if len(handles) > 0 && !want[m.Handle] {
			continue
		}
		space, _ := m.Metadata["space_id"].(string)
		workload, _ := m.Metadata["container_workload"].(string)
		ac := asg.Container{Handle: m.Handle, IP: m.IP, SpaceID: space, Workload: workload}
		if s, ok := m.Metadata["log_config"].(string); ok && s != "" {
			var lc asg.LogConfig
			if err := json.Unmarshal([]byte(s), &lc); err != nil {
				c.logger.Error("log-config", err, lager.Data{"handle": m.Handle})
			} else {
				ac.LogConfig = &lc
			}
		}
		out = append(out, ac)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Handle > out[j].Handle })
	return out, nil
}

// Sync is the periodic full ASG sync. It reads
// security_groups_last_updated first, so that the security groups are
// fetched only when they changed (asgpoll.go).
func (c *asgCycle) Sync(ctx context.Context) error {
	start := time.Now()
	if v, ok := c.version(ctx); ok {
		ctx = context.WithValue(ctx, asgVersionKey{}, v)
	}
	cs, err := c.containers(ctx)
	if err != nil {
		c.sender.IncrementCounter(MetricASGPollFailures)
		return err
	}
	stats, err := c.syncer.SyncAll(ctx, cs)
	if stats.PolicyServerPollTime > 0 {
		c.sender.SendDuration(MetricASGServerPoll, stats.PolicyServerPollTime)
	}
	if err != nil {
		c.sender.IncrementCounter(MetricASGPollFailures)
		return fmt.Errorf("asg sync: %w", err)
	}
	c.sender.SendDuration(MetricASGEnforce, stats.EnforceTime)
	c.sender.SendDuration(MetricASGCleanup, stats.CleanupTime)
	c.sender.SendDuration(MetricASGTotalPoll, time.Since(start))
	return nil
}

// SyncContainer syncs one container's ASGs (force-asgs-for-container).
func (c *asgCycle) SyncContainer(ctx context.Context, handle string) error {
	cs, err := c.containers(ctx, handle)
	if err != nil {
		return err
	}
	return c.syncer.SyncContainers(ctx, cs)
}

// Cleanup removes a deleted container's ASG chains
// (force-orphaned-asgs-cleanup).
func (c *asgCycle) Cleanup(ctx context.Context, handle string) error {
	return c.syncer.CleanupContainer(ctx, handle)
}

// appLogNotifier emits upstream's app log line when a container's
// security group rules were applied.
func appLogNotifier(sender *metrics.Sender) func(asg.Container) {
	return func(c asg.Container) {
		lc := c.LogConfig
		if lc == nil || lc.GUID == "" {
			return
		}
		tags := map[string]string{"source_id": lc.GUID, "instance_id": strconv.Itoa(lc.Index)}
		for k, v := range lc.Tags {
			tags[k] = v
		}
		sender.SendAppLog(metrics.AppLog{AppID: lc.GUID, SourceType: lc.SourceName, SourceInstance: strconv.Itoa(lc.Index),
			Message: "Security group rules were updated", Tags: tags})
	}
}
