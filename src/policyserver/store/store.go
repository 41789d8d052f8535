// Package store is the policy server's SQL store: upstream's schema and
// migrations on PostgreSQL, MySQL and SQLite, the tag pool (groups), policy
// create/delete/read, the policies_info version stamp agents poll, and the
// security groups the ASG syncer writes and cells read.
//
// Every write that assigns or frees tags starts by updating the single
// policies_info row, so writers queue on that row lock (SQLite's immediate
// transactions queue them the same way): tag assignment, destination and
// policy inserts never race, and each write is a handful of batched
// statements rather than a few per policy.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/sqldb"
)

// Metrics receives the store timings upstream emits: Store<Op>SuccessTime
// on success, Store<Op>Error and Store<Op>ErrorTime on failure.
// *metrics.Sender satisfies it.
type Metrics interface {
	SendDuration(name string, d time.Duration)
	IncrementCounter(name string)
}

// Store is the policy server's view of its database. It is safe for
// concurrent use, also by several processes sharing the database.
type Store struct {
	db        *sqldb.DB
	tagLength int
	metrics   Metrics
	bump      string
	// bumpSecurityGroups moves security_groups_info.last_updated forward.
	bumpSecurityGroups string
	cache              policyCache
	stamps             stampGate // shares the snapshot's stamp reads
}

// New wraps a migrated database. tagLength is the `tag_length` config key
// (bytes per tag, 2 upstream); it decides how tags are rendered, while the
// pool size was fixed when PopulateTables first ran. metrics may be nil.
func New(db *sqldb.DB, tagLength int, metrics Metrics) *Store {
	return &Store{
		db:                 db,
		tagLength:          tagLength,
		metrics:            metrics,
		bump:               `UPDATE policies_info SET last_updated = ` + db.Dialect().NextTimestamp("last_updated"),
		bumpSecurityGroups: `UPDATE security_groups_info SET last_updated = ` + db.Dialect().NextTimestamp("last_updated"),
	}
}

// DB returns the underlying pool, for health checks and DB* metrics.
func (s *Store) DB() *sqldb.DB { return s.db }

// TagLength is the configured tag length in bytes.
func (s *Store) TagLength() int { return s.tagLength }

func (s *Store) observe(name string, start time.Time, err *error) {
	if s.metrics == nil {
		return
	}
	d := time.Since(start)
	if *err != nil {
		s.metrics.IncrementCounter(name + "Error")
		s.metrics.SendDuration(name+"ErrorTime", d)
		return
	}
	s.metrics.SendDuration(name+"SuccessTime", d)
}

// write runs fn in a transaction that first takes the policies_info row
// lock, bumping last_updated when bump is set and only locking otherwise.
func (s *Store) write(ctx context.Context, bump bool, fn func(*sqldb.Tx) error) error {
	began, ran := false, false
	err := s.db.WithTx(ctx, func(tx *sqldb.Tx) error {
		began = true
		stmt := `UPDATE policies_info SET id = id`
		if bump {
			stmt = s.bump
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("updating policies_info: %w", err)
		}
		err := fn(tx)
		ran = err == nil
		return err
	})
	switch {
	case err == nil:
		return nil
	case !began:
		return fmt.Errorf("create transaction: %w", err)
	case ran:
		return fmt.Errorf("commit transaction: %w", err)
	default:
		return err
	}
}

// Create stores policies (all or none) and bumps last_updated, even when
// every policy already exists. Apps get tags of type "app", lowest free tag
// first; an id already holding a tag of another type fails the whole call
// with an error wrapping sqldb.ErrConflict.
func (s *Store) Create(ctx context.Context, policies []policy.Policy) (err error) {
	defer s.observe("StoreCreate", time.Now(), &err)
	if len(policies) == 0 {
		return nil
	}
	return s.write(ctx, true, func(tx *sqldb.Tx) error { return s.create(ctx, tx, policies) })
}

func (s *Store) create(ctx context.Context, tx *sqldb.Tx, policies []policy.Policy) error {
	groups, err := assignGroups(ctx, tx, appsOf(policies), policy.GroupTypeApp)
	if err != nil {
		return fmt.Errorf("creating group: %w", err)
	}

	keys := make([]destKey, 0, len(policies))
	for _, p := range policies {
		keys = append(keys, keyOf(groups[p.Destination.ID], p.Destination))
	}
	dests, err := ensureDestinations(ctx, tx, keys)
	if err != nil {
		return fmt.Errorf("creating destination: %w", err)
	}

	pairs := make([]policyKey, 0, len(policies))
	for i, p := range policies {
		pairs = append(pairs, policyKey{group: groups[p.Source.ID], destination: dests[keys[i].unique()].id})
	}
	if err := ensurePolicies(ctx, tx, pairs); err != nil {
		return fmt.Errorf("creating policy: %w", err)
	}
	return nil
}

// Delete removes policies (missing ones are skipped) and bumps
// last_updated. A destination no policy uses any more is deleted, and a tag
// no policy or destination uses any more is freed for reuse.
func (s *Store) Delete(ctx context.Context, policies []policy.Policy) (err error) {
	defer s.observe("StoreDelete", time.Now(), &err)
	if len(policies) == 0 {
		return nil
	}
	return s.write(ctx, true, func(tx *sqldb.Tx) error { return s.delete(ctx, tx, policies) })
}

func (s *Store) delete(ctx context.Context, tx *sqldb.Tx, policies []policy.Policy) error {
	guids := appsOf(policies)
	groups := map[string]int{}
	err := chunked(len(guids), inChunk, func(lo, hi int) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, guid FROM "groups" WHERE guid IN (`+sqldb.Placeholders(hi-lo)+`)`, anys(guids[lo:hi])...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var guid string
			if err := rows.Scan(&id, &guid); err != nil {
				return err
			}
			groups[guid] = id
		}
		return rows.Err()
	})
	if err != nil {
		return fmt.Errorf("getting source id: %w", err)
	}

	// Only policies whose apps and destination exist are deleted, and only
	// their groups and destinations are candidates for clean-up.
	var keys []destKey
	var found []policy.Policy
	for _, p := range policies {
		_, okS := groups[p.Source.ID]
		dst, okD := groups[p.Destination.ID]
		if !okS || !okD {
			continue
		}
		keys = append(keys, keyOf(dst, p.Destination))
		found = append(found, p)
	}
	if len(keys) == 0 {
		return nil
	}
	dests, err := lookupDestinations(ctx, tx, keys)
	if err != nil {
		return fmt.Errorf("getting destination id: %w", err)
	}
	var pairs []policyKey
	var destIDs []int
	candidates := map[int]bool{}
	var candidateList []int
	addCandidate := func(id int) {
		if !candidates[id] {
			candidates[id] = true
			candidateList = append(candidateList, id)
		}
	}
	seenDest := map[int]bool{}
	for i, p := range found {
		d, ok := dests[keys[i].unique()]
		if !ok || d.port != keys[i].port {
			continue
		}
		pairs = append(pairs, policyKey{group: groups[p.Source.ID], destination: d.id})
		if !seenDest[d.id] {
			seenDest[d.id] = true
			destIDs = append(destIDs, d.id)
		}
		addCandidate(groups[p.Source.ID])
		addCandidate(keys[i].group)
	}
	if len(pairs) == 0 {
		return nil
	}
	existing, err := existingPolicies(ctx, tx, pairs)
	if err != nil {
		return fmt.Errorf("deleting policy: %w", err)
	}
	policyIDs := make([]int, 0, len(existing))
	for _, id := range existing {
		policyIDs = append(policyIDs, id)
	}
	err = chunked(len(policyIDs), inChunk, func(lo, hi int) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id IN (`+sqldb.Placeholders(hi-lo)+`)`, anyInts(policyIDs[lo:hi])...)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting policy: %w", err)
	}
	err = chunked(len(destIDs), inChunk, func(lo, hi int) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM destinations WHERE id IN (`+sqldb.Placeholders(hi-lo)+`)
			AND NOT EXISTS (SELECT 1 FROM policies WHERE policies.destination_id = destinations.id)`, anyInts(destIDs[lo:hi])...)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting destination: %w", err)
	}
	err = chunked(len(candidateList), inChunk, func(lo, hi int) error {
		_, err := tx.ExecContext(ctx, `UPDATE "groups" SET guid = NULL, type = NULL WHERE id IN (`+sqldb.Placeholders(hi-lo)+`)
			AND NOT EXISTS (SELECT 1 FROM policies WHERE policies.group_id = "groups".id)
			AND NOT EXISTS (SELECT 1 FROM destinations WHERE destinations.group_id = "groups".id)`, anyInts(candidateList[lo:hi])...)
		return err
	})
	if err != nil {
		return fmt.Errorf("deleting group row: %w", err)
	}
	return nil
}

const policyColumns = `src.guid, src.id, dst.guid, dst.id, d.port, d.start_port, d.end_port, d.protocol`

const policyJoins = ` FROM policies
	LEFT OUTER JOIN "groups" src ON policies.group_id = src.id
	LEFT OUTER JOIN destinations d ON d.id = policies.destination_id
	LEFT OUTER JOIN "groups" dst ON d.group_id = dst.id`

// All returns every policy with its tags, in database order.
func (s *Store) All(ctx context.Context) (_ []policy.Policy, err error) {
	defer s.observe("StoreAll", time.Now(), &err)
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return snap.all(), nil
}

// PolicySnapshot returns every policy with its tags and the
// policies_last_updated stamp they were loaded at, from the same cached
// snapshot All and ByGuids use. The slice is shared: callers must not
// modify it. It is timed as StoreLastUpdated: it replaces the long-poll
// watcher's stamp read, and costs one while the policies are unchanged.
func (s *Store) PolicySnapshot(ctx context.Context) (_ int64, _ []policy.Policy, err error) {
	defer s.observe("StoreLastUpdated", time.Now(), &err)
	snap, err := s.snapshot(ctx)
	if err != nil {
		return 0, nil, err
	}
	return snap.version, snap.policies, nil
}

// ByGuids returns the policies whose source is in srcGuids or (and, with
// inSourceAndDest) whose destination is in destGuids; an empty list adds
// no condition, and two empty lists select nothing. The internal API and
// the external `id` filter pass the same list twice with OR.
func (s *Store) ByGuids(ctx context.Context, srcGuids, destGuids []string, inSourceAndDest bool) (_ []policy.Policy, err error) {
	defer s.observe("StoreByGuids", time.Now(), &err)
	if len(srcGuids) == 0 && len(destGuids) == 0 {
		return []policy.Policy{}, nil
	}
	snap, err := s.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	return snap.byGuids(srcGuids, destGuids, inSourceAndDest), nil
}

// policies runs a policy query. It scans by hand into driver values (the
// generic conversions parse integers from strings) and interns the ids,
// protocols and tags, which repeat across rows: a snapshot of 60,000
// policies is then a few thousand strings, cheap to build and to keep.
func (s *Store) policies(ctx context.Context, query string, args ...any) ([]policy.Policy, error) {
	rows, err := s.db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("listing all: %w", err)
	}
	defer rows.Close()
	out := []policy.Policy{}
	in := interner{strs: map[string]string{}, tags: map[int64]string{}, tagLength: s.tagLength}
	var v [8]any
	dest := make([]any, len(v))
	for i := range v {
		dest[i] = &v[i]
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("listing all: %w", err)
		}
		var p policy.Policy
		var srcTag, dstTag, port, start, end int64
		var ok [8]bool
		p.Source.ID, ok[0] = in.str(v[0])
		srcTag, ok[1] = asInt(v[1])
		p.Destination.ID, ok[2] = in.str(v[2])
		dstTag, ok[3] = asInt(v[3])
		port, ok[4] = asInt(v[4])
		start, ok[5] = asInt(v[5])
		end, ok[6] = asInt(v[6])
		p.Destination.Protocol, ok[7] = in.str(v[7])
		if ok != [8]bool{true, true, true, true, true, true, true, true} {
			return nil, fmt.Errorf("listing all: unexpected row %v", v)
		}
		p.Source.Tag, p.Destination.Tag = in.tag(srcTag), in.tag(dstTag)
		p.Destination.Port, p.Destination.Ports.Start, p.Destination.Ports.End = int(port), int(start), int(end)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing all, getting next row: %w", err)
	}
	return out, nil
}

type interner struct {
	strs      map[string]string
	tags      map[int64]string
	tagLength int
}

func (in *interner) str(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		if s, ok := in.strs[x]; ok {
			return s, true
		}
		in.strs[x] = x
		return x, true
	case []byte:
		if s, ok := in.strs[string(x)]; ok {
			return s, true
		}
		s := string(x)
		in.strs[s] = s
		return s, true
	}
	return "", false
}

func (in *interner) tag(id int64) string {
	if t, ok := in.tags[id]; ok {
		return t
	}
	t := policy.FormatTag(int(id), in.tagLength)
	in.tags[id] = t
	return t
}

// asInt reads an integer column as the drivers deliver it: int64, or text
// ([]byte) from MySQL's text protocol.
func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case int32:
		return int64(x), true
	case []byte:
		n, err := strconv.ParseInt(string(x), 10, 64)
		return n, err == nil
	case nil:
		return 0, true // a NULL port column, as legacy rows may have
	}
	return 0, false
}

// Tags returns every assigned tag in tag order.
func (s *Store) Tags(ctx context.Context) (_ []policy.Tag, err error) {
	defer s.observe("StoreTags", time.Now(), &err)
	rows, err := s.db.QueryContext(ctx, `SELECT guid, id, type FROM "groups" WHERE guid IS NOT NULL ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("listing tags: %w", err)
	}
	defer rows.Close()
	tags := []policy.Tag{}
	for rows.Next() {
		var t policy.Tag
		var id int
		var typ sql.NullString
		if err := rows.Scan(&t.ID, &id, &typ); err != nil {
			return nil, fmt.Errorf("listing tags: %w", err)
		}
		t.Tag = policy.FormatTag(id, s.tagLength)
		t.Type = typ.String
		tags = append(tags, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing tags: %w", err)
	}
	return tags, nil
}

// CreateTag returns the tag of id, assigning the lowest free one if id has
// none. Tags made this way are never freed by policy deletes unless a
// delete names id together with an existing destination, as upstream. id
// holding a tag of another type fails with an error wrapping
// sqldb.ErrConflict; an exhausted pool with one wrapping sql.ErrNoRows.
func (s *Store) CreateTag(ctx context.Context, id, groupType string) (_ policy.Tag, err error) {
	defer s.observe("StoreCreateTag", time.Now(), &err)
	var groups map[string]int
	err = s.write(ctx, false, func(tx *sqldb.Tx) error {
		var err error
		groups, err = assignGroups(ctx, tx, []string{id}, groupType)
		return err
	})
	if err != nil {
		return policy.Tag{}, fmt.Errorf("creating group: %w", err)
	}
	return policy.Tag{ID: id, Tag: policy.FormatTag(groups[id], s.tagLength), Type: groupType}, nil
}

// LastUpdated returns policies_info.last_updated as unix nanoseconds; it
// changes with every Create and Delete.
func (s *Store) LastUpdated(ctx context.Context) (_ int64, err error) {
	defer s.observe("StoreLastUpdated", time.Now(), &err)
	v, err := s.lastUpdated(ctx)
	if err != nil {
		return 0, fmt.Errorf("getting policies: %w", err)
	}
	return v, nil
}

func (s *Store) lastUpdated(ctx context.Context) (int64, error) {
	var t time.Time
	if err := s.db.GetContext(ctx, &t, `SELECT last_updated FROM policies_info ORDER BY id LIMIT 1`); err != nil {
		return 0, err
	}
	return t.UnixNano(), nil
}

// CheckDatabase runs `SELECT 1`, for /health.
func (s *Store) CheckDatabase(ctx context.Context) (err error) {
	defer s.observe("StoreCheckDatabase", time.Now(), &err)
	return s.db.PingContext(ctx)
}

// ---- groups (tags) ----

// assignGroups returns the group id of every guid, assigning the lowest
// free ids, in the order given, to guids without one. The caller holds the
// policies_info lock, so no other writer assigns concurrently; the
// `guid IS NULL` guard and the unique guid column make a violation of that
// assumption an error rather than a double assignment.
func assignGroups(ctx context.Context, tx *sqldb.Tx, guids []string, groupType string) (map[string]int, error) {
	ids := make(map[string]int, len(guids))
	err := chunked(len(guids), inChunk, func(lo, hi int) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, guid, type FROM "groups" WHERE guid IN (`+sqldb.Placeholders(hi-lo)+`)`, anys(guids[lo:hi])...)
		if err != nil {
			return fmt.Errorf("error searching for ID and type: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var guid string
			var typ sql.NullString
			if err := rows.Scan(&id, &guid, &typ); err != nil {
				return err
			}
			if typ.String != groupType {
				return fmt.Errorf("error updating row: %w: id %q already has a tag of type %q", sqldb.ErrConflict, guid, typ.String)
			}
			ids[guid] = id
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, g := range guids {
		if _, ok := ids[g]; !ok {
			missing = append(missing, g)
		}
	}
	if len(missing) == 0 {
		return ids, nil
	}
	var free []int
	if err := tx.SelectContext(ctx, &free, `SELECT id FROM "groups" WHERE guid IS NULL ORDER BY id LIMIT ?`, len(missing)); err != nil {
		return nil, fmt.Errorf("failed to find available tag: %w", err)
	}
	if len(free) < len(missing) {
		return nil, fmt.Errorf("failed to find available tag: %w", sql.ErrNoRows)
	}
	err = chunked(len(missing), assignChunk, func(lo, hi int) error {
		var b strings.Builder
		args := make([]any, 0, 3*(hi-lo)+1)
		b.WriteString(`UPDATE "groups" SET guid = CASE id`)
		for i := lo; i < hi; i++ {
			b.WriteString(` WHEN ? THEN ?`)
			args = append(args, free[i], missing[i])
		}
		b.WriteString(` END, type = ? WHERE guid IS NULL AND id IN (` + sqldb.Placeholders(hi-lo) + `)`)
		args = append(args, groupType)
		for i := lo; i < hi; i++ {
			args = append(args, free[i])
		}
		res, err := tx.ExecContext(ctx, b.String(), args...)
		if err != nil {
			return fmt.Errorf("error updating row: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(hi-lo) {
			return fmt.Errorf("error updating row: %d of %d free tags were taken concurrently (%v)", int64(hi-lo)-n, hi-lo, err)
		}
		for i := lo; i < hi; i++ {
			ids[missing[i]] = free[i]
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// PopulateTables fills an empty groups table with the whole tag pool,
// 2^(8·tagLength) − 1 free rows (ids 1..65535 at tag length 2), in one
// statement, as migrate-db does after migrating. A non-empty table is left
// alone, so changing tag_length later has no effect on the pool. The rows
// get explicit ids, so two processes populating at once collide on the
// primary key instead of doubling the pool; the loser reports success.
func PopulateTables(ctx context.Context, db *sqldb.DB, tagLength int) error {
	if tagLength < 1 || tagLength > 3 {
		return fmt.Errorf("tag length must be greater than 0 and less than 4 (got %d)", tagLength)
	}
	err := db.WithTx(ctx, func(tx *sqldb.Tx) error {
		var n int
		if err := tx.GetContext(ctx, &n, `SELECT COUNT(*) FROM "groups"`); err != nil {
			return fmt.Errorf("counting groups: %w", err)
		}
		if n > 0 {
			return nil
		}
		// A cross join of 16-row tables counts in hex digits, 1 to
		// 16^(2·tagLength), in every dialect, without a recursion limit
		// or a statement of 65,535 value lists.
		const hex = `(SELECT 0 AS n UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7
			UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL SELECT 10 UNION ALL SELECT 11 UNION ALL SELECT 12 UNION ALL SELECT 13 UNION ALL SELECT 14 UNION ALL SELECT 15)`
		factors := make([]string, 2*tagLength)
		terms := make([]string, 2*tagLength)
		for i := range factors {
			factors[i] = fmt.Sprintf("%s h%d", hex, i)
			terms[i] = fmt.Sprintf("%d * h%d.n", 1<<(4*i), i)
		}
		id := strings.Join(terms, " + ") + " + 1"
		size := 1<<(8*tagLength) - 1
		_, err := tx.ExecContext(ctx, `INSERT INTO "groups" (id, guid) SELECT `+id+`, NULL FROM `+strings.Join(factors, " CROSS JOIN ")+
			` WHERE `+id+` <= ?`, size)
		if err != nil {
			return fmt.Errorf("populating tables: %w", err)
		}
		return nil
	})
	if errors.Is(err, sqldb.ErrConflict) {
		return nil // populated concurrently by another process
	}
	return err
}

// ---- destinations and policies ----

type destKey struct {
	group      int
	port       int
	start, end int
	protocol   string
}

// uniqueKey is the unique_destination constraint's tuple.
type uniqueKey struct {
	group      int
	start, end int
	protocol   string
}

func (k destKey) unique() uniqueKey { return uniqueKey{k.group, k.start, k.end, k.protocol} }

func keyOf(group int, d policy.Destination) destKey {
	return destKey{group: group, port: d.Port, start: d.Ports.Start, end: d.Ports.End, protocol: d.Protocol}
}

type destRow struct {
	id   int
	port int
}

// lookupDestinations finds existing destinations by their unique key. It
// reads every destination of the groups involved through the index that
// leads with group_id and matches in Go: one range scan per group beats a
// long OR of tuples, which planners answer with a full scan.
func lookupDestinations(ctx context.Context, tx *sqldb.Tx, keys []destKey) (map[uniqueKey]destRow, error) {
	want := make(map[uniqueKey]bool, len(keys))
	var groups []int
	seenGroup := map[int]bool{}
	for _, k := range keys {
		want[k.unique()] = true
		if !seenGroup[k.group] {
			seenGroup[k.group] = true
			groups = append(groups, k.group)
		}
	}
	out := make(map[uniqueKey]destRow, len(want))
	err := chunked(len(groups), inChunk, func(lo, hi int) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, group_id, port, start_port, end_port, protocol FROM destinations
			WHERE group_id IN (`+sqldb.Placeholders(hi-lo)+`)`, anyInts(groups[lo:hi])...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k uniqueKey
			var r destRow
			var port, start, end sql.NullInt64
			var protocol sql.NullString
			if err := rows.Scan(&r.id, &k.group, &port, &start, &end, &protocol); err != nil {
				return err
			}
			k.start, k.end, k.protocol, r.port = int(start.Int64), int(end.Int64), protocol.String, int(port.Int64)
			if want[k] {
				out[k] = r
			}
		}
		return rows.Err()
	})
	return out, err
}

// ensureDestinations inserts the destinations that do not exist yet and
// returns the ids of all of them.
func ensureDestinations(ctx context.Context, tx *sqldb.Tx, keys []destKey) (map[uniqueKey]destRow, error) {
	have, err := lookupDestinations(ctx, tx, keys)
	if err != nil {
		return nil, err
	}
	var add []destKey
	adding := map[uniqueKey]bool{}
	for _, k := range keys {
		u := k.unique()
		if _, ok := have[u]; !ok && !adding[u] {
			adding[u] = true
			add = append(add, k)
		}
	}
	if len(add) == 0 {
		return have, nil
	}
	err = chunked(len(add), insertChunk, func(lo, hi int) error {
		args := make([]any, 0, 5*(hi-lo))
		for _, k := range add[lo:hi] {
			args = append(args, k.group, k.port, k.start, k.end, k.protocol)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES `+rowsOf(hi-lo, 5), args...)
		return err
	})
	if err != nil {
		return nil, err
	}
	added, err := lookupDestinations(ctx, tx, add)
	if err != nil {
		return nil, err
	}
	for k, v := range added {
		have[k] = v
	}
	return have, nil
}

type policyKey struct{ group, destination int }

// existingPolicies returns the row ids of the pairs that exist, reading
// every policy of the source groups involved (see lookupDestinations).
func existingPolicies(ctx context.Context, tx *sqldb.Tx, pairs []policyKey) (map[policyKey]int, error) {
	want := make(map[policyKey]bool, len(pairs))
	var groups []int
	seenGroup := map[int]bool{}
	for _, p := range pairs {
		want[p] = true
		if !seenGroup[p.group] {
			seenGroup[p.group] = true
			groups = append(groups, p.group)
		}
	}
	have := map[policyKey]int{}
	err := chunked(len(groups), inChunk, func(lo, hi int) error {
		rows, err := tx.QueryContext(ctx, `SELECT id, group_id, destination_id FROM policies WHERE group_id IN (`+sqldb.Placeholders(hi-lo)+`)`,
			anyInts(groups[lo:hi])...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			var p policyKey
			if err := rows.Scan(&id, &p.group, &p.destination); err != nil {
				return err
			}
			if want[p] {
				have[p] = id
			}
		}
		return rows.Err()
	})
	return have, err
}

// ensurePolicies inserts the (source group, destination) pairs that do not
// exist yet.
func ensurePolicies(ctx context.Context, tx *sqldb.Tx, pairs []policyKey) error {
	have, err := existingPolicies(ctx, tx, pairs)
	if err != nil {
		return err
	}
	var add []policyKey
	adding := map[policyKey]bool{}
	for _, p := range pairs {
		if _, ok := have[p]; !ok && !adding[p] {
			adding[p] = true
			add = append(add, p)
		}
	}
	return chunked(len(add), insertChunk, func(lo, hi int) error {
		args := make([]any, 0, 2*(hi-lo))
		for _, p := range add[lo:hi] {
			args = append(args, p.group, p.destination)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO policies (group_id, destination_id) VALUES `+rowsOf(hi-lo, 2), args...)
		return err
	})
}

// ---- helpers ----

// appsOf lists the apps of policies in order of first appearance, source
// then destination per policy: the order upstream assigns tags in.
func appsOf(policies []policy.Policy) []string {
	var out []string
	seen := make(map[string]bool, 2*len(policies))
	for _, p := range policies {
		for _, g := range [2]string{p.Source.ID, p.Destination.ID} {
			if !seen[g] {
				seen[g] = true
				out = append(out, g)
			}
		}
	}
	return out
}

// Chunk sizes keep every statement well under the smallest placeholder
// limit (SQLite's 32766) and the planners' comfort zone.
const (
	inChunk     = 1000
	insertChunk = 500
	assignChunk = 500
)

func chunked(n, size int, fn func(lo, hi int) error) error {
	for lo := 0; lo < n; lo += size {
		if err := fn(lo, min(lo+size, n)); err != nil {
			return err
		}
	}
	return nil
}

func rowsOf(n, width int) string {
	row := "(" + sqldb.Placeholders(width) + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

func anys(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func anyInts(is []int) []any {
	out := make([]any, len(is))
	for i, v := range is {
		out[i] = v
	}
	return out
}
