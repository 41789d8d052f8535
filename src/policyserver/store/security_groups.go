package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/sqldb"
)

// Page selects a page of security groups: From is the row id to start at
// (inclusive, 0 = the beginning), Limit the page size (0 = unlimited).
type Page struct {
	Limit int
	From  int
}

// Pagination tells where the next page starts: the id of the first row not
// returned, 0 when there is none.
type Pagination struct {
	Next int
}

const securityGroupColumns = `id, guid, name, rules, staging_default, running_default, staging_spaces, running_spaces`

// SecurityGroupsBySpaceGuids returns the globally enabled (staging or
// running default) security groups plus those bound to any of spaceGuids,
// in id order, one page at a time.
func (s *Store) SecurityGroupsBySpaceGuids(ctx context.Context, spaceGuids []string, page Page) (_ []policy.SecurityGroup, _ Pagination, err error) {
	defer s.observe("SecurityGroupsStoreBySpaceGuids", time.Now(), &err)
	d := s.db.Dialect()
	where := `(staging_default = true OR running_default = true`
	var args []any
	if len(spaceGuids) > 0 {
		where += ` OR ` + d.JSONArrayContainsAny("staging_spaces", len(spaceGuids)) +
			` OR ` + d.JSONArrayContainsAny("running_spaces", len(spaceGuids))
		args = append(args, anys(spaceGuids)...)
		args = append(args, anys(spaceGuids)...)
	}
	where += `)`
	if page.From > 0 {
		where += ` AND id >= ?`
		args = append(args, page.From)
	}
	query := `SELECT ` + securityGroupColumns + ` FROM security_groups WHERE ` + where + ` ORDER BY id`
	if page.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, page.Limit+1)
	}
	rows, err := s.scanSecurityGroups(ctx, s.db, query, args...)
	if err != nil {
		return nil, Pagination{}, fmt.Errorf("selecting security groups: %w", err)
	}
	var next Pagination
	if page.Limit > 0 && len(rows) > page.Limit {
		next.Next = rows[page.Limit].id
		rows = rows[:page.Limit]
	}
	out := make([]policy.SecurityGroup, len(rows))
	for i, r := range rows {
		out[i] = r.SecurityGroup
	}
	return out, next, nil
}

type securityGroupRow struct {
	id int
	policy.SecurityGroup
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func (s *Store) scanSecurityGroups(ctx context.Context, q querier, query string, args ...any) ([]securityGroupRow, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []securityGroupRow
	for rows.Next() {
		var r securityGroupRow
		var rules sql.NullString
		var staging, running sql.NullBool
		var stagingSpaces, runningSpaces []byte
		if err := rows.Scan(&r.id, &r.GUID, &r.Name, &rules, &staging, &running, &stagingSpaces, &runningSpaces); err != nil {
			return nil, err
		}
		r.Rules, r.StagingDefault, r.RunningDefault = rules.String, staging.Bool, running.Bool
		if r.StagingSpaceGUIDs, err = spaces(stagingSpaces); err != nil {
			return nil, fmt.Errorf("security group %s staging_spaces: %w", r.GUID, err)
		}
		if r.RunningSpaceGUIDs, err = spaces(runningSpaces); err != nil {
			return nil, fmt.Errorf("security group %s running_spaces: %w", r.GUID, err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

func spaces(raw []byte) ([]string, error) {
	out := []string{}
	if len(raw) == 0 {
		return out, nil
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	if out == nil { // JSON null
		out = []string{}
	}
	return out, nil
}

func spacesJSON(guids []string) string {
	if guids == nil {
		guids = []string{}
	}
	b, _ := json.Marshal(guids) // a []string always marshals
	return string(b)
}

// ReplaceSecurityGroups makes the table hold exactly groups, in one
// transaction: new guids are inserted, changed rows updated in place (ids,
// and so pagination, stay stable across syncs) and rows whose guid is gone
// deleted. Unchanged rows are not written. With a duplicate guid the last
// one wins.
//
// The transaction starts by locking the security_groups_info row, so
// concurrent replaces queue instead of racing on inserts, and moves its
// last_updated forward (strictly: sqldb's NextTimestamp) only when a row was
// inserted, updated or deleted: a replace with what the table already holds
// leaves security_groups_last_updated alone, so agents polling it do not
// refetch. (Upstream bumps it on every replace but an empty one.)
func (s *Store) ReplaceSecurityGroups(ctx context.Context, groups []policy.SecurityGroup) (err error) {
	defer s.observe("SecurityGroupsStoreReplace", time.Now(), &err)
	want := make(map[string]policy.SecurityGroup, len(groups))
	var order []string
	for _, g := range groups {
		if _, ok := want[g.GUID]; !ok {
			order = append(order, g.GUID)
		}
		want[g.GUID] = g
	}
	return s.db.WithTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE security_groups_info SET id = id`); err != nil {
			return fmt.Errorf("locking security_groups_info: %w", err)
		}
		have, err := s.scanSecurityGroups(ctx, tx, `SELECT `+securityGroupColumns+` FROM security_groups`)
		if err != nil {
			return fmt.Errorf("selecting security groups: %w", err)
		}
		existing := make(map[string]securityGroupRow, len(have))
		var stale []int
		for _, r := range have {
			existing[r.GUID] = r
			if _, ok := want[r.GUID]; !ok {
				stale = append(stale, r.id)
			}
		}
		err = chunked(len(stale), inChunk, func(lo, hi int) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM security_groups WHERE id IN (`+sqldb.Placeholders(hi-lo)+`)`, anyInts(stale[lo:hi])...)
			return err
		})
		if err != nil {
			return fmt.Errorf("deleting security groups: %w", err)
		}
		changed := len(stale) > 0
		var add []policy.SecurityGroup
		for _, guid := range order {
			g := want[guid]
			cur, ok := existing[guid]
			if !ok {
				add = append(add, g)
				continue
			}
			if sameSecurityGroup(cur.SecurityGroup, g) {
				continue
			}
			changed = true
			_, err := tx.ExecContext(ctx, `UPDATE security_groups SET name = ?, rules = ?, staging_default = ?, running_default = ?,
				staging_spaces = ?, running_spaces = ? WHERE id = ?`,
				g.Name, g.Rules, g.StagingDefault, g.RunningDefault, spacesJSON(g.StagingSpaceGUIDs), spacesJSON(g.RunningSpaceGUIDs), cur.id)
			if err != nil {
				return fmt.Errorf("updating security group %s: %w", guid, err)
			}
		}
		err = chunked(len(add), insertChunk/4, func(lo, hi int) error {
			args := make([]any, 0, 7*(hi-lo))
			for _, g := range add[lo:hi] {
				args = append(args, g.GUID, g.Name, g.Rules, g.StagingDefault, g.RunningDefault, spacesJSON(g.StagingSpaceGUIDs), spacesJSON(g.RunningSpaceGUIDs))
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO security_groups (guid, name, rules, staging_default, running_default, staging_spaces, running_spaces)
				VALUES `+rowsOf(hi-lo, 7), args...)
			return err
		})
		if err != nil {
			return fmt.Errorf("inserting security groups: %w", err)
		}
		if !changed && len(add) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, s.bumpSecurityGroups); err != nil {
			return fmt.Errorf("updating security_groups_info.last_updated: %w", err)
		}
		return nil
	})
}

// SecurityGroupsLastUpdated returns security_groups_info.last_updated as
// unix nanoseconds (upstream's security_groups_last_updated); it changes
// with every ReplaceSecurityGroups that changed the table.
func (s *Store) SecurityGroupsLastUpdated(ctx context.Context) (_ int64, err error) {
	defer s.observe("SecurityGroupsStoreLastUpdated", time.Now(), &err)
	var t time.Time
	if err := s.db.GetContext(ctx, &t, `SELECT last_updated FROM security_groups_info ORDER BY id LIMIT 1`); err != nil {
		return 0, fmt.Errorf("getting security groups last updated: %w", err)
	}
	return t.UnixNano(), nil
}

func sameSecurityGroup(a, b policy.SecurityGroup) bool {
	norm := func(s []string) []string {
		if s == nil {
			return []string{}
		}
		return s
	}
	return a.Name == b.Name && a.Rules == b.Rules &&
		a.StagingDefault == b.StagingDefault && a.RunningDefault == b.RunningDefault &&
		slices.Equal(norm(a.StagingSpaceGUIDs), norm(b.StagingSpaceGUIDs)) &&
		slices.Equal(norm(a.RunningSpaceGUIDs), norm(b.RunningSpaceGUIDs))
}
