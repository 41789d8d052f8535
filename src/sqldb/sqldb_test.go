package sqldb_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/netman-release/netman/src/testsupport/logtest"

	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

var pool = sqldb.Pool{MaxOpenConnections: 10, MaxIdleConnections: 2, ConnectionsMaxLifetimeSeconds: 60}

var testMigrations = []sqldb.Migration{
	{ID: "1", Up: func(d *sqldb.Dialect) []string {
		return []string{`CREATE TABLE IF NOT EXISTS things (id ` + d.AutoIncrementPK + `, name varchar(32) NOT NULL, UNIQUE (name))`}
	}},
	{ID: "2", Up: func(d *sqldb.Dialect) []string {
		return []string{`CREATE TABLE IF NOT EXISTS others (id ` + d.AutoIncrementPK + `)`}
	}},
}

func TestDialects(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, c sqldb.Config) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, logtest.New(t), c, pool)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		defer db.Close()

		t.Run("migrations apply once and are recorded as upstream records them", func(t *testing.T) {
			n, err := sqldb.Migrate(ctx, db, testMigrations)
			if err != nil || n != 2 {
				t.Fatalf("first migrate = %d, %v; want 2, nil", n, err)
			}
			n, err = sqldb.Migrate(ctx, db, testMigrations)
			if err != nil || n != 0 {
				t.Fatalf("second migrate = %d, %v; want 0, nil", n, err)
			}
			var ids []string
			if err := db.SelectContext(ctx, &ids, `SELECT id FROM gorp_migrations ORDER BY id`); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"1", "2"}, ids); diff != "" {
				t.Errorf("recorded migrations (-want +got):\n%s", diff)
			}
		})

		t.Run("an already-recorded migration is not run again", func(t *testing.T) {
			poison := []sqldb.Migration{{ID: "1", Up: func(*sqldb.Dialect) []string { return []string{"THIS IS NOT SQL"} }}}
			if _, err := sqldb.Migrate(ctx, db, poison); err != nil {
				t.Fatalf("recorded migration re-run: %v", err)
			}
		})

		t.Run("unique violations map to ErrConflict", func(t *testing.T) {
			if _, err := db.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, "a"); err != nil {
				t.Fatal(err)
			}
			_, err := db.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, "a")
			if !errors.Is(err, sqldb.ErrConflict) {
				t.Fatalf("duplicate insert error = %v, want ErrConflict", err)
			}
			_, err = db.ExecContext(ctx, `INSERT INTO nosuchtable (name) VALUES (?)`, "a")
			if err == nil || errors.Is(err, sqldb.ErrConflict) {
				t.Fatalf("missing-table error = %v, want a non-conflict error", err)
			}
		})

		t.Run("placeholders are rebound and transactions commit or roll back", func(t *testing.T) {
			err := db.WithTx(ctx, func(tx *sqldb.Tx) error {
				if _, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, "rolled-back"); err != nil {
					return err
				}
				return errors.New("abort")
			})
			if err == nil || err.Error() != "abort" {
				t.Fatalf("WithTx = %v, want abort", err)
			}
			err = db.WithTx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO things (name) VALUES (?)`, "committed")
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			if err := db.SelectContext(ctx, &names, `SELECT name FROM things WHERE name <> ? ORDER BY name`, "a"); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff([]string{"committed"}, names); diff != "" {
				t.Errorf("rows (-want +got):\n%s", diff)
			}
		})

		t.Run("double-quoted identifiers work on every dialect", func(t *testing.T) {
			var n int
			if err := db.GetContext(ctx, &n, `SELECT COUNT(*) FROM "things" WHERE "name" = ?`, "a"); err != nil || n != 1 {
				t.Fatalf("quoted select = %d, %v", n, err)
			}
		})

		t.Run("now comes from the database clock in unix seconds", func(t *testing.T) {
			var now int64
			if err := db.GetContext(ctx, &now, `SELECT `+db.Dialect().NowUnix); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(time.Unix(now, 0)); d < -5*time.Second || d > 5*time.Second {
				t.Fatalf("database now %d is %v away from local clock", now, d)
			}
		})

		t.Run("stats count queries", func(t *testing.T) {
			before := db.Snapshot()
			_ = db.PingContext(ctx)
			_, _ = db.ExecContext(ctx, `SELECT nonsense FROM nowhere`)
			after := db.Snapshot()
			if after.QueriesTotal-before.QueriesTotal != 2 || after.QueriesFailed-before.QueriesFailed != 1 || after.QueriesSucceeded-before.QueriesSucceeded != 1 {
				t.Fatalf("stats before %+v after %+v", before, after)
			}
			if after.OpenConnections < 1 || after.QueriesInFlight != 0 {
				t.Fatalf("pool stats %+v", after)
			}
		})
	})
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	logger := logtest.New(t)
	tests := []struct {
		name string
		cfg  sqldb.Config
		want string
	}{
		{"unsupported type", sqldb.Config{Type: "oracle", DatabaseName: "x", Timeout: 1}, "database type oracle is not supported"},
		{"missing type", sqldb.Config{DatabaseName: "x", Timeout: 1}, "type: missing required value"},
		{"zero timeout", sqldb.Config{Type: "sqlite", DatabaseName: "x"}, "timeout: must be at least 1"},
		{"ssl without ca", sqldb.Config{Type: "postgres", Host: "127.0.0.1", Port: 1, User: "u", DatabaseName: "x", Timeout: 1, RequireSSL: true}, "ca_cert is empty"},
		// Nothing listens on port 1: a refused connection is retried until the
		// timeout budget is spent, then reported.
		{"refused", sqldb.Config{Type: "postgres", Host: "127.0.0.1", Port: 1, User: "u", DatabaseName: "x", Timeout: 1}, "connecting to postgres database"},
		{"refused mysql", sqldb.Config{Type: "mysql", Host: "127.0.0.1", Port: 1, User: "u", DatabaseName: "x", Timeout: 1}, "connecting to mysql database"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sqldb.Open(ctx, logger, tt.cfg, pool)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestConfigValidateNamesEveryProblem(t *testing.T) {
	got := sqldb.Config{Type: "postgres"}.Validate()
	want := []string{
		"host: missing required value",
		"port: missing required value",
		"user: missing required value",
		"database_name: missing required value",
		"timeout: must be at least 1 (got 0)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestConnect: upstream's start-up lines around the open, the failure
// wrapped as "db connect", and a closer that closes the pool.
func TestConnect(t *testing.T) {
	logger, logs := logtest.NewCapture(t, "policy-server")
	db, closeDB, err := sqldb.Connect(context.Background(), logger, dbtest.NewConfig(t, "sqlite"), pool)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	closeDB()
	if err := db.PingContext(context.Background()); err == nil {
		t.Error("the pool is still open after close")
	}
	if diff := cmp.Diff([]string{"policy-server.getting db connection", "policy-server.db connection retrieved"}, logs.Messages()); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
	_, _, err = sqldb.Connect(context.Background(), logger, sqldb.Config{Type: "oracle", DatabaseName: "x", Timeout: 1}, pool)
	if err == nil || !strings.HasPrefix(err.Error(), "db connect: ") {
		t.Errorf("failure = %v, want it wrapped as db connect", err)
	}
}
