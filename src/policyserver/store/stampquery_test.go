package store_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// Two hundred agents asking for their policies at once (what follows every
// policy change) cost the database a handful of stamp queries, not one
// each.
func TestConcurrentPolicyReadsShareTheStampQuery(t *testing.T) {
	ctx := context.Background()
	cfg := dbtest.NewConfig(t, sqldb.TypeSQLite)
	probe := sqldb.ProbeDatabase(cfg.DatabaseName)
	db, err := sqldb.Open(ctx, logtest.New(t), cfg, sqldb.Pool{MaxOpenConnections: 8, MaxIdleConnections: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := store.Migrate(ctx, db); err != nil {
		t.Fatal(err)
	}
	if err := store.PopulateTables(ctx, db, 1); err != nil {
		t.Fatal(err)
	}
	s := store.New(db, 2, nil)
	if err := s.Create(ctx, []policy.Policy{v1("a", "b", "tcp", 8080, 8080)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ByGuids(ctx, []string{"a"}, []string{"a"}, false); err != nil {
		t.Fatal(err)
	}

	probe.InjectLatency(2 * time.Millisecond)
	defer probe.InjectLatency(0)
	q0 := probe.Queries()
	const agents = 200
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make(chan error, agents)
	for range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ps, err := s.ByGuids(ctx, []string{"a"}, []string{"a"}, false)
			if err == nil && len(ps) != 1 {
				t.Errorf("got %d policies, want 1", len(ps))
			}
			errs <- err
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := probe.Queries() - q0; n > agents/10 {
		t.Errorf("%d concurrent policy reads ran %d queries, want at most %d", agents, n, agents/10)
	}
}
