package sqldb_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// SQLite transactions queue in process: many writers at once all succeed
// (none outwaits busy_timeout), and a waiter gives up with its context.
func TestSQLiteTransactionsQueueInProcess(t *testing.T) {
	ctx := context.Background()
	c := dbtest.NewConfig(t, sqldb.TypeSQLite)
	c.Timeout = 1 // busy_timeout 1 s: polling for the lock would fail
	db, err := sqldb.Open(ctx, logtest.New(t), c, sqldb.Pool{MaxOpenConnections: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `CREATE TABLE n (v int)`); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.WithTx(ctx, func(tx *sqldb.Tx) error {
				time.Sleep(100 * time.Millisecond) // 20 × 100 ms: twice the busy timeout
				_, err := tx.ExecContext(ctx, `INSERT INTO n (v) VALUES (1)`)
				return err
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()

	hold := make(chan struct{})
	held := make(chan struct{})
	go func() {
		_ = db.WithTx(ctx, func(*sqldb.Tx) error { close(held); <-hold; return nil })
	}()
	<-held
	waitCtx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = db.WithTx(waitCtx, func(*sqldb.Tx) error { return nil })
	close(hold)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waiting for a busy slot: %v, want the context's deadline", err)
	}
}
