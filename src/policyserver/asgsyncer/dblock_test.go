package asgsyncer_test

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netman-release/netman/src/locket"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// lockFor opens the lock's own pool, as Run does.
func lockFor(t *testing.T, c sqldb.Config, owner string) locket.Lockable {
	t.Helper()
	var db *sqldb.DB
	if c.Type != sqldb.TypeSQLite {
		var err error
		db, err = sqldb.Open(context.Background(), logger(t), c, sqldb.Pool{MaxOpenConnections: 1, MaxIdleConnections: 1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
	}
	l, err := asgsyncer.NewDBLock(c, db, owner)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestDBLockExcludes(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, c sqldb.Config) {
		ctx := context.Background()
		a, b := lockFor(t, c, "a"), lockFor(t, c, "b")
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Refresh(ctx); err != nil {
			t.Fatalf("holder's refresh: %v", err)
		}
		// A collision, so Hold logs only the standby's first attempt.
		if err := b.Acquire(ctx); !errors.Is(err, locket.ErrCollision) {
			t.Fatalf("second syncer acquiring a held lock: %v, want a lock-collision", err)
		}
		if err := b.Refresh(ctx); err == nil {
			t.Fatal("a syncer that never acquired the lock confirmed it")
		}
		if err := a.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.Acquire(ctx); err != nil {
			t.Fatalf("after release: %v", err)
		}
		if err := a.Acquire(ctx); err == nil {
			t.Fatal("first syncer re-acquired a lock the second holds")
		}
		if err := b.Release(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDBLockLoss: the lock's session (or file) going away is noticed by the
// next refresh.
func TestDBLockLoss(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, c sqldb.Config) {
		ctx := context.Background()
		a := lockFor(t, c, "a")
		if err := a.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
		admin, err := sqldb.Open(ctx, logger(t), c, sqldb.Pool{})
		if err != nil {
			t.Fatal(err)
		}
		defer admin.Close()
		switch c.Type {
		case sqldb.TypeSQLite:
			if err := os.Remove(c.DatabaseName + ".asg-syncer.lock"); err != nil {
				t.Fatal(err)
			}
		case sqldb.TypePostgres:
			_, err = admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND objid = 1634953075`)
		case sqldb.TypeMySQL:
			var id int64
			if err = admin.GetContext(ctx, &id, `SELECT IS_USED_LOCK(?)`, asgsyncer.LockKey+"/"+c.DatabaseName); err == nil {
				_, err = admin.ExecContext(ctx, `KILL ?`, id)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Refresh(ctx); err == nil {
			t.Fatal("refresh confirmed a lock whose session or file is gone")
		}
		if err := a.Release(ctx); err != nil {
			t.Logf("release after loss: %v", err) // expected on a dead session
		}
		b := lockFor(t, c, "b")
		if err := b.Acquire(ctx); err != nil {
			t.Fatalf("lock not free after the holder lost it: %v", err)
		}
		_ = b.Release(ctx)
	})
}

// TestTwoSyncersRace: two complete syncers (lock, Cloud Controller, store)
// share one database; only one writes at a time and the other takes over
// when the first stops.
func TestTwoSyncersRace(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, c sqldb.Config) {
		env := startCC(t)
		env.cc.Put(publicNetworks())
		st, db := newStore(t, c)
		var active, maxActive, runs atomic.Int32
		type syncerProc struct {
			stop context.CancelFunc
			done chan error
		}
		start := func(owner string) syncerProc {
			ctx, stop := context.WithCancel(context.Background())
			client, tokens := env.clients(t, 5*time.Second)
			s := asgsyncer.NewSyncer(logger(t), tokens, client, st, newRecorder(), time.Hour)
			lock := lockFor(t, c, owner)
			done := make(chan error, 1)
			go func() {
				done <- locket.Hold(ctx, logger(t), lock, 20*time.Millisecond, func(ctx context.Context) error {
					n := active.Add(1)
					defer active.Add(-1)
					runs.Add(1)
					if n > maxActive.Load() {
						maxActive.Store(n)
					}
					return s.Loop(ctx, logger(t), 20*time.Millisecond)
				})
			}()
			return syncerProc{stop: stop, done: done}
		}
		a := start("a")
		waitUntil(t, "first syncer to write", func() bool { return len(table(t, db)) == 1 })
		b := start("b")
		time.Sleep(300 * time.Millisecond)
		if runs.Load() != 1 {
			t.Fatalf("%d syncers ran while one held the lock", runs.Load())
		}
		a.stop()
		if err := <-a.done; err != nil {
			t.Fatal(err)
		}
		env.cc.Put(cc.SecurityGroup{GUID: "asg-after", Name: "after"})
		waitUntil(t, "second syncer to take over and write", func() bool { return len(table(t, db)) == 2 })
		b.stop()
		if err := <-b.done; err != nil {
			t.Fatal(err)
		}
		if runs.Load() != 2 || maxActive.Load() != 1 {
			t.Errorf("runs=%d max concurrently active=%d, want 2 and 1", runs.Load(), maxActive.Load())
		}
	})
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
