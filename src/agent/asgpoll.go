package agent

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/asg"
	"github.com/netman-release/netman/src/policy"
)

// ASG propagation. Newer upstream serves security_groups_last_updated, the
// security_groups_info stamp the store moves whenever the table changes;
// its agent reads it before each ASG poll and skips fetching the security
// groups when it has not moved (silk-release PR #156). netman's agent does
// the same, and against a netman server, which offers the long-poll form
// of the stamp (X-Netman-Long-Poll), also parks a long-poll on it and runs
// the ASG cycle as soon as it moves, so an ASG change reaches the cells in
// about a database round trip instead of up to asg_poll_interval.
//
// Against an upstream server without the endpoint (404) every ASG poll
// fetches the security groups, as upstream's agent of that version does.
// The periodic poll runs in every case: it also repairs drifted chains and
// picks up containers that appeared without a force call.

// ASGVersionSource is the part of the internal API client that reads
// security_groups_last_updated.
type ASGVersionSource interface {
	SecurityGroupsLastUpdated(ctx context.Context) (int64, bool, error)
	WaitSecurityGroupsLastUpdated(ctx context.Context, since int64, wait, grace time.Duration) (int64, bool, error)
}

// asgVersionKey carries the stamp read before an ASG poll to the group
// cache; requests without it (force-asgs-for-container) always fetch.
type asgVersionKey struct{}

// version returns the stamp the coming ASG poll may trust: the long-polled
// one while that is healthy, else a plain read. ok is false when there is
// none to trust (no endpoint, or the read failed): the poll then fetches.
func (c *asgCycle) version(ctx context.Context) (v int64, ok bool) {
	v, err := c.stamp.current(ctx)
	if err != nil {
		var se *StatusError
		if errors.As(err, &se) && se.Code == 404 {
			if !c.notServed {
				c.notServed = true
				c.logger.Info("security-groups-last-updated-not-served", lager.Data{"fallback": "fetching security groups every asg poll"})
			}
			return 0, false
		}
		c.logger.Error("security-groups-last-updated", err)
		return 0, false
	}
	c.notServed = false
	return v, true
}

// groupCache is the asg.Source the ASG syncer reads through: it answers
// from the groups last fetched when the poll's stamp (asgVersionKey) equals
// the stamp read before that fetch and the spaces asked for are among those
// fetched; otherwise it fetches. The stamp is read before fetching, so a
// change during the fetch moves it past the cached one and is fetched next
// time.
type groupCache struct {
	src asg.Source

	mu      sync.Mutex
	valid   bool
	version int64
	spaces  map[string]bool
	groups  []policy.SecurityGroup
	hits    int // polls answered without a fetch
}

func (c *groupCache) SecurityGroups(ctx context.Context, spaceGUIDs []string) ([]policy.SecurityGroup, error) {
	version, versioned := ctx.Value(asgVersionKey{}).(int64)
	if versioned {
		if groups, ok := c.lookup(version, spaceGUIDs); ok {
			return groups, nil
		}
	}
	groups, err := c.src.SecurityGroups(ctx, spaceGUIDs)
	if err != nil || !versioned {
		return groups, err
	}
	spaces := make(map[string]bool, len(spaceGUIDs))
	for _, s := range spaceGUIDs {
		spaces[s] = true
	}
	c.mu.Lock()
	c.valid, c.version, c.spaces, c.groups = true, version, spaces, groups
	c.mu.Unlock()
	return groups, nil
}

// lookup returns the cached groups that apply to spaceGUIDs — the
// defaults and those bound to any of them, exactly what the server would
// answer — when the cache is current for them.
func (c *groupCache) lookup(version int64, spaceGUIDs []string) ([]policy.SecurityGroup, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.valid || c.version != version {
		return nil, false
	}
	want := make(map[string]bool, len(spaceGUIDs))
	for _, s := range spaceGUIDs {
		if !c.spaces[s] {
			return nil, false
		}
		want[s] = true
	}
	bound := func(spaces []string) bool {
		return slices.ContainsFunc(spaces, func(s string) bool { return want[s] })
	}
	var out []policy.SecurityGroup
	for _, g := range c.groups {
		if g.StagingDefault || g.RunningDefault || bound(g.StagingSpaceGUIDs) || bound(g.RunningSpaceGUIDs) {
			out = append(out, g)
		}
	}
	c.hits++
	return out, true
}

// Hits is how many ASG polls were answered without fetching.
func (c *groupCache) Hits() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits
}
