package asgsyncer

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/locket"
	"github.com/netman-release/netman/src/sqldb"
)

// LockKey is the lock's name, in locket and in the database.
const LockKey = "policy-server-asg-syncer"

// errLockHeld is another syncer holding the database lock.
var errLockHeld = fmt.Errorf("%w: another policy-server-asg-syncer holds the lock", locket.ErrCollision)

// advisoryKey is the PostgreSQL advisory lock key ("asgs"); advisory locks
// are scoped to the database, so it cannot collide with another
// deployment's database on the same server.
const advisoryKey = 0x61736773

// NewDBLock returns the lock taken in the policy database when no locket
// is configured, without any schema of its own (the database stays
// upstream's):
//   - postgres: a session advisory lock (pg_try_advisory_lock) on a
//     connection held for as long as the lock;
//   - mysql: a named lock (GET_LOCK) on a held connection, named after the
//     database since MySQL lock names are server-wide;
//   - sqlite: an flock on "<database file>.asg-syncer.lock".
//
// db is a pool used only for the lock (postgres, mysql; nil for sqlite).
func NewDBLock(c sqldb.Config, db *sqldb.DB, owner string) (locket.Lockable, error) {
	switch c.Type {
	case sqldb.TypePostgres:
		return &sessionLock{db: db, owner: owner, kind: "postgres",
			take:    `SELECT pg_try_advisory_lock(?)`,
			check:   `SELECT COUNT(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND classid = 0 AND objid = ? AND objsubid = 1 AND pid = pg_backend_pid() AND granted`,
			release: `SELECT pg_advisory_unlock(?)`,
			arg:     int64(advisoryKey),
		}, nil
	case sqldb.TypeMySQL:
		name := LockKey + "/" + c.DatabaseName
		if len(name) > 64 {
			name = name[:64] // MySQL's limit on lock names
		}
		return &sessionLock{db: db, owner: owner, kind: "mysql",
			take:    `SELECT COALESCE(GET_LOCK(?, 0), 0) = 1`,
			check:   `SELECT COALESCE(IS_USED_LOCK(?) = CONNECTION_ID(), 0) = 1`,
			release: `SELECT RELEASE_LOCK(?)`,
			arg:     name,
		}, nil
	case sqldb.TypeSQLite:
		return &fileLock{path: c.DatabaseName + ".asg-syncer.lock", owner: owner}, nil
	default:
		return nil, fmt.Errorf("no database lock for database type %q", c.Type)
	}
}

// sessionLock is a lock owned by one database session: held while the
// connection lives, checked on that connection, gone when it breaks.
type sessionLock struct {
	db                   *sqldb.DB
	owner, kind          string
	take, check, release string
	arg                  any
	conn                 *sql.Conn
}

func (l *sessionLock) query(ctx context.Context, q string) (bool, error) {
	var ok bool
	err := l.conn.QueryRowContext(ctx, l.db.Dialect().Rebind(q), l.arg).Scan(&ok)
	return ok, err
}

func (l *sessionLock) Acquire(ctx context.Context) error {
	if l.conn == nil {
		conn, err := l.db.Conn(ctx)
		if err != nil {
			return fmt.Errorf("database lock: connecting: %w", err)
		}
		l.conn = conn
	}
	ok, err := l.query(ctx, l.take)
	if err != nil {
		l.drop()
		return fmt.Errorf("database lock: %w", err)
	}
	if !ok {
		return errLockHeld
	}
	return nil
}

func (l *sessionLock) Refresh(ctx context.Context) error {
	if l.conn == nil {
		return errors.New("database lock: not held")
	}
	ok, err := l.query(ctx, l.check)
	if err != nil {
		l.drop()
		return fmt.Errorf("database lock: checking: %w", err)
	}
	if !ok {
		return errors.New("database lock: no longer held by this session")
	}
	return nil
}

func (l *sessionLock) Release(ctx context.Context) error {
	if l.conn == nil {
		return nil
	}
	_, err := l.query(ctx, l.release)
	// Closing the session releases the lock in any case.
	l.drop()
	return err
}

// drop closes the session: the server releases whatever it held. The
// connection is marked bad so the pool discards it instead of reusing a
// session that held a lock.
func (l *sessionLock) drop() {
	if l.conn != nil {
		_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
		_ = l.conn.Close()
		l.conn = nil
	}
}

// dbLockSession is the log session of a lock in the database (netman's;
// upstream has only locket's "locket-lock").
const dbLockSession = "sql-lock"

func (l *sessionLock) Describe() (string, map[string]any) {
	return dbLockSession, map[string]any{"lock": map[string]any{"key": LockKey, "owner": l.owner, "database": l.kind}}
}

// fileLock is an flock beside the SQLite database file: every syncer on
// the database's host contends for it.
type fileLock struct {
	path, owner string
	f           *os.File
}

func (l *fileLock) Acquire(context.Context) error {
	if l.f != nil {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("database lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return errLockHeld
		}
		return fmt.Errorf("database lock: flock %s: %w", l.path, err)
	}
	l.f = f
	return nil
}

// Refresh checks the locked file is still the one at the path: a lock
// file removed or replaced would let another syncer lock a new one.
func (l *fileLock) Refresh(context.Context) error {
	if l.f == nil {
		return errors.New("database lock: not held")
	}
	held, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("database lock: %w", err)
	}
	now, err := os.Stat(l.path)
	if err != nil {
		return fmt.Errorf("database lock: %w", err)
	}
	if !os.SameFile(held, now) {
		return fmt.Errorf("database lock: %s was replaced", l.path)
	}
	return nil
}

func (l *fileLock) Release(context.Context) error {
	if l.f == nil {
		return nil
	}
	err := l.f.Close() // closing the descriptor releases the flock
	l.f = nil
	return err
}

func (l *fileLock) Describe() (string, map[string]any) {
	return dbLockSession, map[string]any{"lock": map[string]any{"key": LockKey, "owner": l.owner, "file": l.path}}
}
