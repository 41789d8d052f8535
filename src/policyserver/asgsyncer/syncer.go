package asgsyncer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/policy"
)

// Metric names: upstream's timings, and netman's failure counter.
const (
	MetricRetrievalTime = "SecurityGroupsRetrievalFromCCTime"
	MetricTotalSyncTime = "SecurityGroupsTotalSyncTime"
	// MetricSyncError counts cycles that left the table as it was because
	// Cloud Controller, UAA or the database failed.
	MetricSyncError = "SecurityGroupsSyncError"
)

// TokenSource is the UAA client-credentials token (auth.UAAClient).
type TokenSource interface {
	GetToken(ctx context.Context) (string, error)
	Invalidate()
}

// Store is where the security groups go (store.Store).
type Store interface {
	ReplaceSecurityGroups(ctx context.Context, groups []policy.SecurityGroup) error
}

// Metrics receives timings and counters (*metrics.Sender).
type Metrics interface {
	SendDuration(name string, d time.Duration)
	IncrementCounter(name string)
}

// Syncer copies Cloud Controller's security groups into the store, one
// Poll at a time. It is not safe for concurrent Polls (one syncer writes,
// under the lock).
type Syncer struct {
	logger        lager.Logger
	tokens        TokenSource
	cc            *CCClient
	store         Store
	metrics       Metrics
	retryDeadline time.Duration
	now           func() time.Time

	// synced is the asg_latest_update the table holds (zero: not yet
	// synced by this process).
	synced     time.Time
	haveSynced bool
	// lastSync is when the table was last brought up to date (or when the
	// syncer started); unstable listings are tolerated until
	// retryDeadline after it.
	lastSync time.Time
}

// NewSyncer returns a syncer; retryDeadline is retry_deadline_seconds.
func NewSyncer(logger lager.Logger, tokens TokenSource, cc *CCClient, store Store, metrics Metrics, retryDeadline time.Duration) *Syncer {
	return &Syncer{
		logger: logger, tokens: tokens, cc: cc, store: store, metrics: metrics,
		retryDeadline: retryDeadline, now: time.Now,
	}
}

// ResetMarker forgets which Cloud Controller state the table holds, so the
// next Poll reads everything: called whenever the lock is (re)acquired,
// since another syncer may have written meanwhile.
func (s *Syncer) ResetMarker() {
	s.synced, s.haveSynced = time.Time{}, false
}

// Poll runs one cycle: read the marker, and when it moved (or nothing was
// synced yet) read every security group and replace the table in one
// transaction. On any failure the table is left as it was, the failure is
// counted, and the next Poll retries from scratch.
func (s *Syncer) Poll(ctx context.Context) error {
	err := s.poll(ctx)
	if err != nil && ctx.Err() == nil {
		s.metrics.IncrementCounter(MetricSyncError)
	}
	return err
}

func (s *Syncer) poll(ctx context.Context) error {
	start := s.now()
	s.logger.Debug("asg-sync-started")
	defer s.logger.Debug("asg-sync-complete")
	if s.lastSync.IsZero() {
		s.logger.Debug("initializing-lastSyncTime")
		s.lastSync = start
	}

	token, err := s.tokens.GetToken(ctx)
	if err != nil {
		return fmt.Errorf("get uaa token: %w", err)
	}
	marker, err := s.cc.LatestUpdate(ctx, token)
	if err != nil {
		s.forgetTokenIfRefused(err)
		return err
	}
	if s.haveSynced && !marker.IsZero() && !marker.After(s.synced) {
		s.logger.Debug("skipping-update", lager.Data{"cc-latest-update-time": marker, "local-latest-update-time": s.synced})
		return nil
	}
	s.logger.Debug("performing-update", lager.Data{"cc-latest-update-time": marker, "local-latest-update-time": s.synced})

	retrieveStart := s.now()
	ccGroups, marker, err := s.cc.SecurityGroups(ctx, token)
	if err != nil {
		s.forgetTokenIfRefused(err)
		if errors.Is(err, ErrUnstableList) && s.now().After(s.lastSync.Add(s.retryDeadline)) {
			return fmt.Errorf("unable to retrieve a consistent listing of security groups from CAPI after '%s': %w", s.retryDeadline, err)
		}
		return err
	}
	s.logger.Info("successfully-fetched-security-groups", lager.Data{"count": len(ccGroups)})
	s.metrics.SendDuration(MetricRetrievalTime, s.now().Sub(retrieveStart))
	s.logger.Debug("successfully-sent-performance-metrics")

	groups, err := Convert(ccGroups)
	if err != nil {
		return err
	}
	if err := s.store.ReplaceSecurityGroups(ctx, groups); err != nil {
		return fmt.Errorf("replacing security groups: %w", err)
	}
	// Only now does the table hold this state: a failed write is retried
	// next cycle even when Cloud Controller does not change again.
	s.logger.Debug("updating-local-latest-update-time", lager.Data{"old-local-latest-update-time": s.synced, "new-local-latest-update-time": marker})
	s.synced, s.haveSynced = marker, true
	s.lastSync = s.now()
	s.logger.Debug("updating-last-sync-time", lager.Data{"new-last-sync-time": s.lastSync})
	s.metrics.SendDuration(MetricTotalSyncTime, s.now().Sub(start))
	return nil
}

func (s *Syncer) forgetTokenIfRefused(err error) {
	if jsonhttp.IsStatus(err, http.StatusUnauthorized) {
		s.tokens.Invalidate()
	}
}

// Convert maps Cloud Controller's resources to table rows as upstream
// does: rules re-serialised with upstream's keys, space relationships as
// guid lists (a relationship without a guid is an error, as upstream).
func Convert(ccGroups []CCSecurityGroup) ([]policy.SecurityGroup, error) {
	out := make([]policy.SecurityGroup, 0, len(ccGroups))
	for _, g := range ccGroups {
		staging, err := spaceGUIDs(g.Relationships.StagingSpaces, "staging", g.GUID)
		if err != nil {
			return nil, err
		}
		running, err := spaceGUIDs(g.Relationships.RunningSpaces, "running", g.GUID)
		if err != nil {
			return nil, err
		}
		rules, err := json.Marshal(g.Rules)
		if err != nil {
			return nil, fmt.Errorf("error converting rules to json for ASG '%s': %w", g.GUID, err)
		}
		out = append(out, policy.SecurityGroup{
			GUID:              g.GUID,
			Name:              g.Name,
			Rules:             string(rules),
			StagingDefault:    g.GloballyEnabled.Staging,
			RunningDefault:    g.GloballyEnabled.Running,
			StagingSpaceGUIDs: staging,
			RunningSpaceGUIDs: running,
		})
	}
	return out, nil
}

func spaceGUIDs(rel spaceRelationship, kind, asg string) ([]string, error) {
	out := make([]string, 0, len(rel.Data))
	for _, d := range rel.Data {
		guid, ok := d["guid"]
		if !ok {
			return nil, fmt.Errorf("no 'guid' found for %s-space-relationship on asg '%s'", kind, asg)
		}
		out = append(out, guid)
	}
	return out, nil
}
