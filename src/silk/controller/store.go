package controller

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
)

// Migrations creates upstream's `subnets` table. The id and every column
// match upstream's migration "1", so an upstream database is adopted as is.
var Migrations = []sqldb.Migration{{
	ID: "1",
	Up: func(d *sqldb.Dialect) []string {
		return []string{`CREATE TABLE IF NOT EXISTS subnets (
			id ` + d.AutoIncrementPK + `,
			underlay_ip varchar(15) NOT NULL,
			overlay_subnet varchar(18) NOT NULL,
			overlay_hwaddr varchar(17) NOT NULL,
			last_renewed_at bigint NOT NULL,
			UNIQUE (underlay_ip),
			UNIQUE (overlay_subnet),
			UNIQUE (overlay_hwaddr)
		)`}
	},
}}

// Store is the SQL side of the lease table. All times are the database's.
type Store struct {
	db  *sqldb.DB
	now string
}

// NewStore wraps a migrated database.
func NewStore(db *sqldb.DB) *Store {
	return &Store{db: db, now: db.Dialect().NowUnix}
}

const leaseColumns = `underlay_ip, overlay_subnet, overlay_hwaddr`

// kindFilter selects single-IP or block leases by their prefix length.
func kindFilter(single bool) string {
	if single {
		return `overlay_subnet LIKE '%/32'`
	}
	return `overlay_subnet NOT LIKE '%/32'`
}

// ByUnderlayIP returns the lease held by underlayIP, if any.
func (s *Store) ByUnderlayIP(ctx context.Context, underlayIP string) (lease.Lease, bool, error) {
	var l lease.Lease
	err := s.db.GetContext(ctx, &l, `SELECT `+leaseColumns+` FROM subnets WHERE underlay_ip = ?`, underlayIP)
	if errors.Is(err, sql.ErrNoRows) {
		return lease.Lease{}, false, nil
	}
	if err != nil {
		return lease.Lease{}, false, err
	}
	return l, true, nil
}

// TakenSubnets returns every leased subnet of one kind, expired or not.
func (s *Store) TakenSubnets(ctx context.Context, single bool) (map[string]bool, error) {
	var subnets []string
	if err := s.db.SelectContext(ctx, &subnets, `SELECT overlay_subnet FROM subnets WHERE `+kindFilter(single)); err != nil {
		return nil, err
	}
	taken := make(map[string]bool, len(subnets))
	for _, sub := range subnets {
		taken[sub] = true
	}
	return taken, nil
}

// OldestExpired returns the least recently renewed expired lease of one kind.
func (s *Store) OldestExpired(ctx context.Context, single bool, expirationSeconds int) (lease.Lease, bool, error) {
	var l lease.Lease
	err := s.db.GetContext(ctx, &l, `SELECT `+leaseColumns+` FROM subnets
		WHERE `+kindFilter(single)+` AND last_renewed_at + ? <= `+s.now+`
		ORDER BY last_renewed_at ASC LIMIT 1`, expirationSeconds)
	if errors.Is(err, sql.ErrNoRows) {
		return lease.Lease{}, false, nil
	}
	if err != nil {
		return lease.Lease{}, false, err
	}
	return l, true, nil
}

// DeleteIfExpired deletes the lease only while it is still expired, so a
// cell that renewed a moment ago keeps it. It reports whether it deleted.
func (s *Store) DeleteIfExpired(ctx context.Context, l lease.Lease, expirationSeconds int) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM subnets
		WHERE underlay_ip = ? AND overlay_subnet = ? AND last_renewed_at + ? <= `+s.now,
		l.UnderlayIP, l.OverlaySubnet, expirationSeconds)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Insert records a lease as renewed now. A lease that collides with another
// on any column fails with sqldb.ErrConflict.
func (s *Store) Insert(ctx context.Context, l lease.Lease) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO subnets (underlay_ip, overlay_subnet, overlay_hwaddr, last_renewed_at)
		VALUES (?, ?, ?, `+s.now+`)`, l.UnderlayIP, l.OverlaySubnet, l.OverlayHardwareAddr)
	return err
}

// Touch marks the exact lease as renewed now and reports whether it exists.
// One statement serves the common renewal; only a miss needs a second look.
func (s *Store) Touch(ctx context.Context, l lease.Lease) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE subnets SET last_renewed_at = `+s.now+`
		WHERE underlay_ip = ? AND overlay_subnet = ? AND overlay_hwaddr = ?`,
		l.UnderlayIP, l.OverlaySubnet, l.OverlayHardwareAddr)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// DeleteByUnderlayIP removes the lease held by underlayIP; deleting nothing
// is not an error.
func (s *Store) DeleteByUnderlayIP(ctx context.Context, underlayIP string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM subnets WHERE underlay_ip = ?`, underlayIP)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

// Routable returns the leases renewed within expirationSeconds. It scans by
// hand: every cell polls it, and with thousands of rows reflection-based
// scanning was most of its cost.
func (s *Store) Routable(ctx context.Context, expirationSeconds int) ([]lease.Lease, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+leaseColumns+` FROM subnets
		WHERE last_renewed_at + ? > `+s.now+` ORDER BY id`, expirationSeconds)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	leases := []lease.Lease{}
	for rows.Next() {
		var l lease.Lease
		if err := rows.Scan(&l.UnderlayIP, &l.OverlaySubnet, &l.OverlayHardwareAddr); err != nil {
			return nil, err
		}
		leases = append(leases, l)
	}
	return leases, rows.Err()
}

// Counts is the lease-table summary behind the controller's gauges.
type Counts struct {
	Total  int `db:"total"`
	Blocks int `db:"blocks"`
	Fresh  int `db:"fresh"`
}

// Count summarises the table in one scan; Fresh counts leases renewed within
// freshSeconds.
func (s *Store) Count(ctx context.Context, freshSeconds int) (Counts, error) {
	var c Counts
	err := s.db.GetContext(ctx, &c, `SELECT
			COUNT(*) AS total,
			COALESCE(SUM(CASE WHEN `+kindFilter(false)+` THEN 1 ELSE 0 END), 0) AS blocks,
			COALESCE(SUM(CASE WHEN last_renewed_at + ? > `+s.now+` THEN 1 ELSE 0 END), 0) AS fresh
		FROM subnets`, freshSeconds)
	if err != nil {
		return Counts{}, fmt.Errorf("counting leases: %w", err)
	}
	return c, nil
}
