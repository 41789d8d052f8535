package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// Policy reads are served from an in-memory snapshot of all policies,
// validated on every call against policies_info.last_updated, which every
// Create and Delete changes (strictly forward: sqldb's NextTimestamp). A
// call reads the stamp first and uses the snapshot only if it was loaded at
// that very stamp, so a caller always sees its own writes and every write
// committed before the call. The stamp query is a primary-key
// read; the snapshot turns "policies of these 250 apps" from a join over
// the whole table into map lookups. Agents ask exactly that, all of them
// shortly after each write, so one reload per write serves them all.

type snapshot struct {
	version  int64 // last_updated, unix ns, read before the policies
	policies []policy.Policy
	bySource map[string][]int32
	byDest   map[string][]int32
}

type policyCache struct {
	mu      sync.Mutex
	current *snapshot
	loading chan struct{} // closed when the reload in flight ends
}

// reloadTimeout bounds a reload, which outlives the call that started it
// (other callers wait for it).
const reloadTimeout = 2 * time.Minute

// snapshot returns the policies as of the call or later: the cached
// snapshot when its stamp is the database's current one, else a fresh load.
// Loads are single-flight; callers that waited for someone else's load
// check the stamp again. Equality, not order, decides, so even a stamp
// that went backwards (a DB clock step under an upstream writer) reloads.
func (s *Store) snapshot(ctx context.Context) (*snapshot, error) {
	c := &s.cache
	for {
		version, err := s.stamps.read(ctx, s.lastUpdated)
		if err != nil {
			return nil, fmt.Errorf("listing all: %w", err)
		}
		c.mu.Lock()
		if cur := c.current; cur != nil && cur.version == version {
			c.mu.Unlock()
			return cur, nil
		}
		if wait := c.loading; wait != nil {
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		done := make(chan struct{})
		c.loading = done
		c.mu.Unlock()

		// Others wait for this load: it must not die with this caller.
		loadCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reloadTimeout)
		snap, err := s.load(loadCtx)
		cancel()
		c.mu.Lock()
		if err == nil {
			c.current = snap
		}
		c.loading = nil
		close(done)
		c.mu.Unlock()
		// Loaded after this call began: it holds every write before it.
		return snap, err
	}
}

// load reads all policies. Joining the group table twice into 60,000 rows
// costs the database a double hash join and the driver 120,000 guid
// strings; reading the assigned groups once and the policy rows as
// integers costs about half. The two reads are separate statements, so
// they are bracketed by the stamp: every write that could make them
// disagree (a freed tag reassigned in between) moves it, and then the load
// is repeated. Under constant writes it falls back to upstream's single
// joined query.
func (s *Store) load(ctx context.Context) (*snapshot, error) {
	for range 3 {
		before, err := s.lastUpdated(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing all: %w", err)
		}
		guids, err := s.assignedGroups(ctx)
		if err != nil {
			return nil, err
		}
		ps, orphan, err := s.policyRows(ctx, guids)
		if err != nil {
			return nil, err
		}
		after, err := s.lastUpdated(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing all: %w", err)
		}
		if after != before {
			continue
		}
		if orphan != nil {
			// Upstream's scan fails on the NULLs of such a row too.
			return nil, fmt.Errorf("listing all: policy row %v without an assigned source or destination group", orphan)
		}
		return newSnapshot(before, ps), nil
	}
	version, err := s.lastUpdated(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing all: %w", err)
	}
	ps, err := s.policies(ctx, `SELECT `+policyColumns+policyJoins)
	if err != nil {
		return nil, err
	}
	return newSnapshot(version, ps), nil
}

type group struct{ guid, tag string }

func (s *Store) assignedGroups(ctx context.Context) (map[int64]group, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, guid FROM "groups" WHERE guid IS NOT NULL`)
	if err != nil {
		return nil, fmt.Errorf("listing all: %w", err)
	}
	defer rows.Close()
	groups := map[int64]group{}
	var id int64
	var guid string
	for rows.Next() {
		if err := rows.Scan(&id, &guid); err != nil {
			return nil, fmt.Errorf("listing all: %w", err)
		}
		groups[id] = group{guid: guid, tag: policy.FormatTag(int(id), s.tagLength)}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing all: %w", err)
	}
	return groups, nil
}

// policyRows reads every policy, naming its groups from groups. A row whose
// groups are not there is skipped and the first one returned as orphan: a
// write between the two reads explains it (the caller checks the stamp),
// otherwise the data is broken.
func (s *Store) policyRows(ctx context.Context, groups map[int64]group) (_ []policy.Policy, orphan []any, _ error) {
	rows, err := s.db.QueryContext(ctx, `SELECT policies.group_id, d.group_id, d.port, d.start_port, d.end_port, d.protocol
		FROM policies LEFT OUTER JOIN destinations d ON d.id = policies.destination_id`)
	if err != nil {
		return nil, nil, fmt.Errorf("listing all: %w", err)
	}
	defer rows.Close()
	out := []policy.Policy{}
	in := interner{strs: map[string]string{}}
	var v [6]any
	dest := make([]any, len(v))
	for i := range v {
		dest[i] = &v[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, nil, fmt.Errorf("listing all: %w", err)
		}
		srcID, ok0 := asInt(v[0])
		dstID, ok1 := asInt(v[1])
		port, ok2 := asInt(v[2])
		start, ok3 := asInt(v[3])
		end, ok4 := asInt(v[4])
		protocol, ok5 := in.str(v[5])
		src, ok6 := groups[srcID]
		dst, ok7 := groups[dstID]
		if !(ok0 && ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
			if orphan == nil {
				orphan = slices.Clone(v[:])
			}
			continue
		}
		out = append(out, policy.Policy{
			Source: policy.Source{ID: src.guid, Tag: src.tag},
			Destination: policy.Destination{ID: dst.guid, Tag: dst.tag, Protocol: protocol,
				Port: int(port), Ports: policy.Ports{Start: int(start), End: int(end)}},
		})
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("listing all, getting next row: %w", err)
	}
	return out, orphan, nil
}

func newSnapshot(version int64, ps []policy.Policy) *snapshot {
	snap := &snapshot{
		version:  version,
		policies: ps,
		bySource: make(map[string][]int32),
		byDest:   make(map[string][]int32),
	}
	for i, p := range ps {
		snap.bySource[p.Source.ID] = append(snap.bySource[p.Source.ID], int32(i))
		snap.byDest[p.Destination.ID] = append(snap.byDest[p.Destination.ID], int32(i))
	}
	return snap
}

func (snap *snapshot) all() []policy.Policy { return slices.Clone(snap.policies) }

// byGuids selects as ByGuids documents, in load (database) order.
func (snap *snapshot) byGuids(srcGuids, destGuids []string, inSourceAndDest bool) []policy.Policy {
	var picked []int32
	switch {
	case len(srcGuids) > 0 && len(destGuids) > 0 && inSourceAndDest:
		dst := make(map[string]bool, len(destGuids))
		for _, g := range destGuids {
			dst[g] = true
		}
		for _, g := range dedupeStrings(srcGuids) {
			for _, i := range snap.bySource[g] {
				if dst[snap.policies[i].Destination.ID] {
					picked = append(picked, i)
				}
			}
		}
	default:
		for _, g := range srcGuids {
			picked = append(picked, snap.bySource[g]...)
		}
		for _, g := range destGuids {
			picked = append(picked, snap.byDest[g]...)
		}
	}
	// Sorting restores database order and brings duplicates (a policy
	// matched on both sides, a guid asked for twice) together.
	slices.Sort(picked)
	picked = slices.Compact(picked)
	out := make([]policy.Policy, len(picked))
	for j, i := range picked {
		out[j] = snap.policies[i]
	}
	return out
}

func dedupeStrings(ss []string) []string {
	seen := make(map[string]bool, len(ss))
	out := ss[:0:0]
	for _, s := range ss {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
