package sqldb

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Migration is one schema step, identified as upstream identifies it so an
// existing upstream database is recognised by its gorp_migrations rows.
type Migration struct {
	ID string
	// Up returns the statements for a dialect, run in order.
	Up func(d *Dialect) []string
}

// Migrate applies, in order, every migration whose id is not yet recorded
// in gorp_migrations and returns how many it applied. Statements are
// expected to be idempotent (CREATE ... IF NOT EXISTS and the like) because
// MySQL commits DDL implicitly and two processes may migrate at once; the
// bookkeeping insert then decides which of them recorded it.
func Migrate(ctx context.Context, db *DB, migrations []Migration) (int, error) {
	if _, err := db.ExecContext(ctx, db.dialect.migrationsTable); err != nil {
		return 0, fmt.Errorf("creating migrations table: %w", err)
	}
	var done []string
	if err := db.SelectContext(ctx, &done, `SELECT id FROM gorp_migrations`); err != nil {
		return 0, fmt.Errorf("reading applied migrations: %w", err)
	}
	applied := make(map[string]bool, len(done))
	for _, id := range done {
		applied[id] = true
	}
	count := 0
	for _, m := range migrations {
		if applied[m.ID] {
			continue
		}
		for _, stmt := range m.Up(db.dialect) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				return count, fmt.Errorf("migration %s: %w", m.ID, err)
			}
		}
		_, err := db.ExecContext(ctx, `INSERT INTO gorp_migrations (id, applied_at) VALUES (?, ?)`, m.ID, time.Now().UTC())
		if err != nil && !errors.Is(err, ErrConflict) {
			return count, fmt.Errorf("recording migration %s: %w", m.ID, err)
		}
		count++
	}
	return count, nil
}

// MigrateWithRetry runs Migrate up to attempts times, sleeping delay between
// failures, as upstream daemons do at start-up while a peer may be migrating.
func MigrateWithRetry(ctx context.Context, db *DB, migrations []Migration, attempts int, delay time.Duration) (int, error) {
	var err error
	for i := 0; i < attempts; i++ {
		var n int
		if n, err = Migrate(ctx, db, migrations); err == nil {
			return n, nil
		}
		if i < attempts-1 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(delay):
			}
		}
	}
	return 0, fmt.Errorf("migrating database after %d attempts: %w", attempts, err)
}
