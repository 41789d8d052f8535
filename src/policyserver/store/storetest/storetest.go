// Package storetest hands tests fresh, migrated policy-server databases
// (tag length 2, tag pool filled). Migrating SQLite under -race takes
// seconds, so SQLite databases are copies of one template migrated once per
// test binary; postgres and mysql databases are migrated each time.
package storetest

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

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
	return store.RunMigrateDB(context.Background(), lager.NewLogger("migrate"),
		store.MigrateDBConfig{Database: cfg, DatabaseMigrationTimeout: 60, TagLength: 2}, time.Second)
}
