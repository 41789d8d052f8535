// Package storetest hands tests fresh, migrated policy-server databases
// (tag length 2, tag pool filled). Migrating SQLite under -race takes
// seconds, so SQLite databases are copies of one template migrated once per
// test binary; postgres and mysql databases are migrated each time.
package storetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/migratedb"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

var template struct {
	once sync.Once
	path string
	err  error
}

// Main runs the tests and removes the template; call it from TestMain.
func Main(m *testing.M) int {
	code := m.Run()
	if template.path != "" {
		_ = os.RemoveAll(filepath.Dir(template.path))
	}
	return code
}

// Config returns the config of a fresh, migrated database of dbType.
func Config(tb testing.TB, dbType string) sqldb.Config {
	tb.Helper()
	cfg := dbtest.NewConfig(tb, dbType)
	if dbType != sqldb.TypeSQLite {
		if err := migrate(cfg); err != nil {
			tb.Fatalf("migrating %s: %v", dbType, err)
		}
		return cfg
	}
	template.once.Do(func() {
		dir, err := os.MkdirTemp("", "netman-policy-template-")
		if err != nil {
			template.err = err
			return
		}
		template.path = filepath.Join(dir, "template.db")
		template.err = migrate(sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: template.path, Timeout: 10})
	})
	if template.err != nil {
		tb.Fatalf("template database: %v", template.err)
	}
	data, err := os.ReadFile(template.path)
	if err == nil {
		err = os.WriteFile(cfg.DatabaseName, data, 0o600)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// Open returns an open, migrated database of dbType, closed when the test ends.
func Open(tb testing.TB, dbType string, logger lager.Logger) *sqldb.DB {
	tb.Helper()
	db, err := sqldb.Open(context.Background(), logger, Config(tb, dbType), sqldb.Pool{MaxOpenConnections: 20, MaxIdleConnections: 20})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	return db
}

func migrate(cfg sqldb.Config) error {
	return migratedb.Run(context.Background(), lager.NewLogger("migrate"),
		migratedb.Config{Database: cfg, DatabaseMigrationTimeout: 60, TagLength: 2}, time.Second)
}

// BenchPolicies and BenchApps shape the benchmark data set: 60,000 policies
// between 6,000 apps, each app the source of 10 policies and the
// destination of 10 (app i reaches apps i+1, i+38, ... on port 8080+k).
const (
	BenchPolicies = 60000
	BenchApps     = BenchPolicies / 10
)

// BenchApp is the guid of benchmark app i.
func BenchApp(i int) string { return fmt.Sprintf("00000000-0000-4000-8000-%012d", i%BenchApps) }

// SeedBenchPolicies writes the benchmark data set in batches of 2,000.
func SeedBenchPolicies(tb testing.TB, s *store.Store) {
	tb.Helper()
	ctx := context.Background()
	start := time.Now()
	const batch = 2000
	ps := make([]policy.Policy, 0, batch)
	for i := range BenchPolicies {
		src, k := i/10, i%10
		ps = append(ps, policy.NewPolicy(BenchApp(src), BenchApp(src+1+37*k), "tcp", 8080+k, 8080+k))
		if len(ps) == batch {
			if err := s.Create(ctx, ps); err != nil {
				tb.Fatal(err)
			}
			ps = ps[:0]
		}
	}
	tb.Logf("seeded %d policies in %v", BenchPolicies, time.Since(start).Round(time.Millisecond))
}
