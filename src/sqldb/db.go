package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/jmoiron/sqlx"

	"github.com/netman-release/netman/src/metrics"
)

// ErrConflict is returned, wrapped, for every unique-constraint violation.
var ErrConflict = errors.New("conflict")

// DB is a connection pool that rebinds `?` placeholders for its dialect,
// maps unique violations to ErrConflict and counts queries for upstream's
// DB* metrics.
type DB struct {
	x       *sqlx.DB
	dialect *Dialect
	stats   queryStats
	txSlot  chan struct{} // one transaction at a time when dialect.serialTx
	probe   *Probe        // ProbeDatabase's, or nil
}

type queryStats struct {
	total, succeeded, failed atomic.Uint64
	inFlight                 atomic.Int64
	maxNanos                 atomic.Int64
}

// Querier is what stores need: satisfied by *DB and *Tx.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// Dialect returns the database's dialect.
func (db *DB) Dialect() *Dialect { return db.dialect }

// Close closes the pool.
func (db *DB) Close() error { return db.x.Close() }

// Conn returns one connection of the pool for the caller alone, for
// session state that must stay on it (an advisory lock). It fails instead
// of reconnecting when the connection breaks; the caller closes it.
func (db *DB) Conn(ctx context.Context) (*sql.Conn, error) { return db.x.Conn(ctx) }

// PingContext checks the connection, as the health endpoints do.
func (db *DB) PingContext(ctx context.Context) error {
	return db.track(func() error {
		_, err := db.x.ExecContext(ctx, "SELECT 1")
		return err
	})
}

// ExecContext runs a statement.
func (db *DB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := db.track(func() (err error) {
		res, err = db.x.ExecContext(ctx, db.dialect.Rebind(query), args...)
		return err
	})
	return res, db.mapErr(err)
}

// GetContext scans one row into dest; sql.ErrNoRows when there is none.
func (db *DB) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return db.mapErr(db.track(func() error {
		return db.x.GetContext(ctx, dest, db.dialect.Rebind(query), args...)
	}))
}

// SelectContext scans all rows into dest.
func (db *DB) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	return db.mapErr(db.track(func() error {
		return db.x.SelectContext(ctx, dest, db.dialect.Rebind(query), args...)
	}))
}

// QueryContext runs a query for callers that scan rows by hand on a hot
// path; the caller must close the rows.
func (db *DB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var rows *sql.Rows
	err := db.track(func() (err error) {
		rows, err = db.x.QueryContext(ctx, db.dialect.Rebind(query), args...)
		return err
	})
	return rows, db.mapErr(err)
}

// WithTx runs fn in a transaction, committing when fn returns nil.
func (db *DB) WithTx(ctx context.Context, fn func(*Tx) error) error {
	if db.txSlot != nil {
		select {
		case db.txSlot <- struct{}{}:
			defer func() { <-db.txSlot }()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	tx, err := db.x.BeginTxx(ctx, nil)
	if err != nil {
		return db.mapErr(err)
	}
	if err := fn(&Tx{tx: tx, db: db}); err != nil {
		_ = tx.Rollback()
		return err
	}
	return db.mapErr(tx.Commit())
}

func (db *DB) track(fn func() error) error {
	db.stats.total.Add(1)
	db.stats.inFlight.Add(1)
	start := time.Now()
	db.probe.observe()
	err := fn()
	elapsed := time.Since(start).Nanoseconds()
	db.stats.inFlight.Add(-1)
	for {
		cur := db.stats.maxNanos.Load()
		if elapsed <= cur || db.stats.maxNanos.CompareAndSwap(cur, elapsed) {
			break
		}
	}
	// ErrNoRows is an answer, not a failed query.
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		db.stats.failed.Add(1)
	} else {
		db.stats.succeeded.Add(1)
	}
	return err
}

func (db *DB) mapErr(err error) error {
	if db.dialect.IsUniqueViolation(err) {
		return fmt.Errorf("%w: %w", ErrConflict, err)
	}
	return err
}

// Tx is a transaction with the same rebinding and error mapping as DB.
type Tx struct {
	tx *sqlx.Tx
	db *DB
}

// ExecContext runs a statement in the transaction.
func (t *Tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	var res sql.Result
	err := t.db.track(func() (err error) {
		res, err = t.tx.ExecContext(ctx, t.db.dialect.Rebind(query), args...)
		return err
	})
	return res, t.db.mapErr(err)
}

// GetContext scans one row in the transaction.
func (t *Tx) GetContext(ctx context.Context, dest any, query string, args ...any) error {
	return t.db.mapErr(t.db.track(func() error {
		return t.tx.GetContext(ctx, dest, t.db.dialect.Rebind(query), args...)
	}))
}

// SelectContext scans all rows in the transaction.
func (t *Tx) SelectContext(ctx context.Context, dest any, query string, args ...any) error {
	return t.db.mapErr(t.db.track(func() error {
		return t.tx.SelectContext(ctx, dest, t.db.dialect.Rebind(query), args...)
	}))
}

// QueryContext runs a query in the transaction for callers that scan rows
// by hand; the caller must close the rows before the next statement.
func (t *Tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	var rows *sql.Rows
	err := t.db.track(func() (err error) {
		rows, err = t.tx.QueryContext(ctx, t.db.dialect.Rebind(query), args...)
		return err
	})
	return rows, t.db.mapErr(err)
}

// Stats is a snapshot for upstream's DB metrics.
type Stats struct {
	OpenConnections  int
	QueriesTotal     uint64
	QueriesSucceeded uint64
	QueriesFailed    uint64
	QueriesInFlight  int64
}

// Snapshot returns the pool and query counters.
func (db *DB) Snapshot() Stats {
	return Stats{
		OpenConnections:  db.x.Stats().OpenConnections,
		QueriesTotal:     db.stats.total.Load(),
		QueriesSucceeded: db.stats.succeeded.Load(),
		QueriesFailed:    db.stats.failed.Load(),
		QueriesInFlight:  db.stats.inFlight.Load(),
	}
}

// TakeQueryDurationMax returns the longest query since the previous call and
// starts a new window, so each emitted DBQueryDurationMax covers one emit
// interval.
func (db *DB) TakeQueryDurationMax() time.Duration {
	return time.Duration(db.stats.maxNanos.Swap(0))
}

// MetricSources are upstream's DB* metrics for a daemon's emitter.
func (db *DB) MetricSources() []metrics.Source {
	stat := func(name string, get func(Stats) float64) metrics.Source {
		return metrics.Source{Name: name, Get: func(context.Context) (float64, error) { return get(db.Snapshot()), nil }}
	}
	return []metrics.Source{
		stat("DBOpenConnections", func(s Stats) float64 { return float64(s.OpenConnections) }),
		stat("DBQueriesTotal", func(s Stats) float64 { return float64(s.QueriesTotal) }),
		stat("DBQueriesSucceeded", func(s Stats) float64 { return float64(s.QueriesSucceeded) }),
		stat("DBQueriesFailed", func(s Stats) float64 { return float64(s.QueriesFailed) }),
		stat("DBQueriesInFlight", func(s Stats) float64 { return float64(s.QueriesInFlight) }),
		{Name: "DBQueryDurationMax", Unit: "seconds", Get: func(context.Context) (float64, error) {
			return db.TakeQueryDurationMax().Seconds(), nil
		}},
	}
}

// Open connects to the database described by c, retrying retriable
// failures (up to 10 attempts, 3 s apart, as upstream) within c.Timeout,
// and applies the pool settings.
func Open(ctx context.Context, logger lager.Logger, c Config, pool Pool) (*DB, error) {
	return open(ctx, logger, c, pool, 10, 3*time.Second)
}

func open(ctx context.Context, logger lager.Logger, c Config, pool Pool, attempts int, delay time.Duration) (*DB, error) {
	if probs := c.Validate(); len(probs) > 0 {
		return nil, fmt.Errorf("invalid database config: %s", probs[0])
	}
	d, err := DialectFor(c.Type)
	if err != nil {
		return nil, err
	}
	raw, err := d.open(c)
	if err != nil {
		return nil, fmt.Errorf("opening %s database: %w", d.Name, err)
	}
	deadline := time.Now().Add(c.ConnectTimeout())
	for attempt := 1; ; attempt++ {
		pingCtx, cancel := context.WithDeadline(ctx, deadline)
		err = raw.PingContext(pingCtx)
		cancel()
		if err == nil {
			break
		}
		if attempt >= attempts || !d.retriable(err) || time.Now().Add(delay).After(deadline) {
			_ = raw.Close()
			return nil, fmt.Errorf("connecting to %s database: %w", d.Name, err)
		}
		logger.Info("retrying-database-connection", lager.Data{"attempt": attempt, "error": err.Error()})
		select {
		case <-ctx.Done():
			_ = raw.Close()
			return nil, ctx.Err()
		case <-time.After(delay):
		}
	}
	raw.SetMaxOpenConns(pool.MaxOpenConnections)
	raw.SetMaxIdleConns(pool.MaxIdleConnections)
	raw.SetConnMaxLifetime(time.Duration(pool.ConnectionsMaxLifetimeSeconds) * time.Second)
	db := &DB{x: sqlx.NewDb(raw, d.Name), dialect: d, probe: probeFor(c.DatabaseName)}
	if d.serialTx {
		db.txSlot = make(chan struct{}, 1)
	}
	return db, nil
}
