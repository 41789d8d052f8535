package sqldb_test

import (
	"context"
	"testing"
	"time"

	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// A probe counts the queries of DBs opened for its database, and its
// injected latency slows each one; other databases are not watched.
func TestProbeDatabase(t *testing.T) {
	ctx := context.Background()
	cfg := dbtest.NewConfig(t, "sqlite")
	probe := sqldb.ProbeDatabase(cfg.DatabaseName)
	db, err := sqldb.Open(ctx, logtest.New(t), cfg, pool)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	other, err := sqldb.Open(ctx, logtest.New(t), dbtest.NewConfig(t, "sqlite"), pool)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	for range 3 {
		if err := db.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
		if err := other.PingContext(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if n := probe.Queries(); n != 3 {
		t.Errorf("probe counted %d queries, want 3", n)
	}
	probe.InjectLatency(50 * time.Millisecond)
	start := time.Now()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("a query with 50ms injected took %v", took)
	}
	probe.InjectLatency(0)
}
