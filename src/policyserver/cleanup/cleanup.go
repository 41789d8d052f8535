// Package cleanup owns the stale-policy cleaner of the external policy
// server: it deletes the policies whose source or destination app Cloud
// Controller no longer knows. policy-server runs it periodically and on
// POST .../policies/cleanup.
package cleanup

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
)

// ChunkSize is how many app guids go into one Cloud Controller query, as
// upstream (hard-coded; its cc_app_request_chunk_size key is unused).
const ChunkSize = 100

// Store is the part of the policy store the cleaner uses.
type Store interface {
	All(ctx context.Context) ([]policy.Policy, error)
	Delete(ctx context.Context, policies []policy.Policy) error
}

// TokenSource supplies the policy server's client token for CC.
type TokenSource interface {
	GetToken(ctx context.Context) (string, error)
}

// AppRegistry tells which of some app guids exist (*auth.CCClient).
type AppRegistry interface {
	LiveAppGUIDs(ctx context.Context, token string, appGUIDs []string) (map[string]struct{}, error)
}

// Cleaner deletes stale policies.
type Cleaner struct {
	logger lager.Logger
	store  Store
	tokens TokenSource
	apps   AppRegistry
}

// New returns a cleaner; logger should be the "policy-cleaner" session.
func New(logger lager.Logger, store Store, tokens TokenSource, apps AppRegistry) *Cleaner {
	return &Cleaner{logger: logger, store: store, tokens: tokens, apps: apps}
}

// DeleteStalePolicies deletes every policy naming an app Cloud Controller
// does not know and returns them (with their tags). Any Cloud Controller
// failure aborts the run before anything is deleted. Unlike upstream, a
// policy whose two apps are both stale is returned once, and a run that
// finds nothing stale does not touch the database (upstream's empty delete
// still bumped policies_last_updated, making every cell refetch).
func (c *Cleaner) DeleteStalePolicies(ctx context.Context) ([]policy.Policy, error) {
	all, err := c.store.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("database read failed for c2c policies: %w", err)
	}
	if len(all) == 0 {
		return []policy.Policy{}, nil
	}
	token, err := c.tokens.GetToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("get UAA token failed: %w", err)
	}
	stale := map[string]struct{}{}
	for chunk := range slices.Chunk(policy.AppGUIDs(all), ChunkSize) {
		live, err := c.apps.LiveAppGUIDs(ctx, token, chunk)
		if err != nil {
			return nil, fmt.Errorf("get app guids from Cloud-Controller failed: %w", err)
		}
		for _, g := range chunk {
			if _, ok := live[g]; !ok {
				stale[g] = struct{}{}
			}
		}
	}
	out := []policy.Policy{}
	for _, p := range all {
		_, src := stale[p.Source.ID]
		_, dst := stale[p.Destination.ID]
		if src || dst {
			out = append(out, p)
		}
	}
	c.logger.Info("deleting stale policies:", lager.Data{
		"total_c2c_policies": len(all),
		"stale_c2c_policies": json.RawMessage(policy.AppendV1List(nil, out)),
	})
	if len(out) == 0 {
		return out, nil
	}
	if err := c.store.Delete(ctx, out); err != nil {
		return nil, fmt.Errorf("database write failed: %w", err)
	}
	return out, nil
}

// PollCycle is the periodic run: the first call (the poller's, at start-up)
// does nothing, so the first cleanup happens one interval after start, as
// upstream. Errors are for the poller to log; they never stop it.
func (c *Cleaner) PollCycle() func(context.Context) error {
	started := false
	return func(ctx context.Context) error {
		if !started {
			started = true
			return nil
		}
		_, err := c.DeleteStalePolicies(ctx)
		return err
	}
}
