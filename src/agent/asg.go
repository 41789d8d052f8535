package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/asg"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/metrics"
)

// newASGSyncer builds the syncer from the agent's config.
func newASGSyncer(logger lager.Logger, cfg Config, driver *iptables.Driver, source asg.Source, a *Agent) (*asg.Syncer, error) {
	deny, err := rules.ParseDenyNetworks(cfg.DenyNetworks.Always, cfg.DenyNetworks.Running, cfg.DenyNetworks.Staging)
	if err != nil {
		return nil, err
	}
	o := cfg.OutboundConnections
	return asg.New(logger, driver, source, asg.Config{
		ASGLogging: cfg.IPTablesASGLogging, DeniedLogsPerSec: cfg.IPTablesDeniedLogsPerSec, Deny: deny,
		Conn:                          rules.OutConn{Limit: o.Limit, Logging: o.Logging, DryRun: o.DryRun, Burst: o.Burst, RatePerSec: o.RatePerSec},
		DisableContainerNetworkPolicy: cfg.DisableContainerNetworkPolicy, OverlayNetwork: cfg.OverlayNetwork,
	}, func(c asg.Container) { a.appLogNotifier(c) })
}

// ASG is the dynamic security group syncer (package asg).
type ASG interface {
	SyncAll(ctx context.Context, containers []asg.Container) (asg.Stats, error)
	SyncContainers(ctx context.Context, containers []asg.Container) error
	CleanupContainer(ctx context.Context, handle string) error
}

// asgContainers reads the metadata store for the ASG syncer: every
// container (not only those with a policy group), or the given handles.
// A log_config that does not decode is logged and ignored: it only feeds
// the app log line, and must not cost the container its egress rules.
func (a *Agent) asgContainers(ctx context.Context, handles ...string) ([]asg.Container, error) {
	all, err := a.store.ReadAll(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading container metadata: %w", err)
	}
	want := map[string]bool{}
	for _, h := range handles {
		want[h] = true
	}
	var out []asg.Container
	for _, c := range all {
		if len(handles) > 0 && !want[c.Handle] {
			continue
		}
		space, _ := c.Metadata["space_id"].(string)
		workload, _ := c.Metadata["container_workload"].(string)
		ac := asg.Container{Handle: c.Handle, IP: c.IP, SpaceID: space, Workload: workload}
		if s, ok := c.Metadata["log_config"].(string); ok && s != "" {
			var lc asg.LogConfig
			if err := json.Unmarshal([]byte(s), &lc); err != nil {
				a.logger.Error("log-config", err, lager.Data{"handle": c.Handle})
			} else {
				ac.LogConfig = &lc
			}
		}
		out = append(out, ac)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Handle > out[j].Handle })
	return out, nil
}

// ASGCycle is the periodic full ASG sync. It reads
// security_groups_last_updated first, so that the security groups are
// fetched only when they changed (asgpoll.go).
func (a *Agent) ASGCycle(ctx context.Context) error {
	start := time.Now()
	if v, ok := a.asgVersion(ctx); ok {
		ctx = context.WithValue(ctx, asgVersionKey{}, v)
	}
	cs, err := a.asgContainers(ctx)
	if err != nil {
		a.sender.IncrementCounter(MetricASGPollFailures)
		return err
	}
	stats, err := a.asg.SyncAll(ctx, cs)
	if stats.PolicyServerPollTime > 0 {
		a.sender.SendDuration(MetricASGServerPoll, stats.PolicyServerPollTime)
	}
	if err != nil {
		a.sender.IncrementCounter(MetricASGPollFailures)
		return fmt.Errorf("asg sync: %w", err)
	}
	a.sender.SendDuration(MetricASGEnforce, stats.EnforceTime)
	a.sender.SendDuration(MetricASGCleanup, stats.CleanupTime)
	a.sender.SendDuration(MetricASGTotalPoll, time.Since(start))
	return nil
}

// ASGForContainer syncs one container's ASGs (force-asgs-for-container).
func (a *Agent) ASGForContainer(ctx context.Context, handle string) error {
	cs, err := a.asgContainers(ctx, handle)
	if err != nil {
		return err
	}
	return a.asg.SyncContainers(ctx, cs)
}

// ASGCleanup removes a deleted container's ASG chains
// (force-orphaned-asgs-cleanup).
func (a *Agent) ASGCleanup(ctx context.Context, handle string) error {
	return a.asg.CleanupContainer(ctx, handle)
}

// appLogNotifier emits upstream's app log line when a container's
// security group rules were applied.
func (a *Agent) appLogNotifier(c asg.Container) {
	lc := c.LogConfig
	if lc == nil || lc.GUID == "" {
		return
	}
	tags := map[string]string{"source_id": lc.GUID, "instance_id": strconv.Itoa(lc.Index)}
	for k, v := range lc.Tags {
		tags[k] = v
	}
	a.sender.SendAppLog(metrics.AppLog{AppID: lc.GUID, SourceType: lc.SourceName, SourceInstance: strconv.Itoa(lc.Index),
		Message: "Security group rules were updated", Tags: tags})
}
