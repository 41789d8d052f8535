package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func openDB(tb testing.TB, dbType string, maxOpen int) *sqldb.DB {
	tb.Helper()
	db, err := sqldb.Open(context.Background(), logtest.New(tb), dbtest.NewConfig(tb, dbType), sqldb.Pool{MaxOpenConnections: maxOpen, MaxIdleConnections: maxOpen})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

// newStore is a migrated, populated store on a fresh database. The pool is
// populated at tag length 1 (255 tags) whatever tagLength renders: enough
// for every test but the pool's own, and 65,535 rows cost seconds per test
// on SQLite under the race detector.
func newStore(tb testing.TB, dbType string, tagLength int) *store.Store {
	tb.Helper()
	return newStoreWith(tb, dbType, tagLength, nil, 8)
}

func newStoreWith(tb testing.TB, dbType string, tagLength int, m store.Metrics, maxOpen int) *store.Store {
	tb.Helper()
	ctx := context.Background()
	db := openDB(tb, dbType, maxOpen)
	if _, err := store.Migrate(ctx, db); err != nil {
		tb.Fatalf("migrate: %v", err)
	}
	if err := store.PopulateTables(ctx, db, 1); err != nil {
		tb.Fatalf("populate: %v", err)
	}
	return store.New(db, tagLength, m)
}

// v1 builds a policy as the external API maps a v1 body.
func v1(src, dst, proto string, start, end int) policy.Policy {
	port := 0
	if start == end {
		port = start
	}
	return policy.Policy{
		Source:      policy.Source{ID: src},
		Destination: policy.Destination{ID: dst, Protocol: proto, Port: port, Ports: policy.Ports{Start: start, End: end}},
	}
}

// v0 builds a policy as the external API maps a v0 body.
func v0(src, dst, proto string, port int) policy.Policy {
	return policy.Policy{
		Source:      policy.Source{ID: src},
		Destination: policy.Destination{ID: dst, Protocol: proto, Port: port, Ports: policy.Ports{Start: port, End: port}},
	}
}

type fakeMetrics struct {
	durations map[string]int
	counters  map[string]int
}

func newFakeMetrics() *fakeMetrics {
	return &fakeMetrics{durations: map[string]int{}, counters: map[string]int{}}
}

func (f *fakeMetrics) SendDuration(name string, _ time.Duration) { f.durations[name]++ }
func (f *fakeMetrics) IncrementCounter(name string)              { f.counters[name]++ }
