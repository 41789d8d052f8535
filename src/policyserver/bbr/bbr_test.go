package bbr_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/bbr"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// sdkConfig is the config.json bbr-cfnetworkingdb renders for a database.
func sdkConfig(c sqldb.Config) bbr.Config {
	return bbr.Config{
		Username: c.User, Password: c.Password, Host: c.Host, Port: int(c.Port),
		Adapter: c.Type, Database: c.DatabaseName,
	}
}

// tableRows reads every row of every table, as text, in a stable order:
// what a backup must carry, down to the free rows of the tag pool and the
// migration history.
func tableRows(t *testing.T, s *store.Store) map[string][]string {
	t.Helper()
	ctx := context.Background()
	db := s.DB()
	var list string
	switch db.Dialect().Name {
	case sqldb.TypeSQLite:
		list = `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`
	case sqldb.TypePostgres:
		list = `SELECT tablename FROM pg_tables WHERE schemaname = 'public'`
	case sqldb.TypeMySQL:
		list = `SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()`
	}
	var tables []string
	if err := db.SelectContext(ctx, &tables, list); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, table := range tables {
		rows, err := db.QueryContext(ctx, `SELECT * FROM "`+table+`"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, "%s=%v;", cols[i], v)
			}
			lines = append(lines, b.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		_ = rows.Close()
		slices.Sort(lines)
		out[table] = lines
	}
	return out
}

func checkSame(t *testing.T, what string, want, got any) {
	t.Helper()
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("%s (-backed up +restored):\n%s", what, diff)
	}
}

// checkUpToDate checks netman's migrations find nothing to do.
func checkUpToDate(t *testing.T, s *store.Store) {
	t.Helper()
	n, err := store.Migrate(context.Background(), s.DB())
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("migrations applied %d migrations to the restored database, want 0", n)
	}
	var ids []string
	if err := s.DB().SelectContext(context.Background(), &ids, `SELECT id FROM gorp_migrations`); err != nil {
		t.Fatal(err)
	}
	want := store.MigrationIDs()
	slices.Sort(ids)
	slices.Sort(want)
	checkSame(t, "gorp_migrations", want, ids)
}

// backup is a populated policy database and its backup.
type backup struct {
	cfg      sqldb.Config
	store    *store.Store
	want     storetest.Contents  // what the store read before the backup
	wantRows map[string][]string // every table's rows before the backup
	runner   bbr.Runner
	log      *bytes.Buffer // the client programs' output
	artifact string
}

// backedUp populates a fresh policy database of dbType and backs it up as
// bbr-cfnetworkingdb's backup script does.
func backedUp(t *testing.T, dbType string) backup {
	t.Helper()
	b := backup{cfg: storetest.Config(t, dbType), log: &bytes.Buffer{}}
	b.store = storetest.OpenStore(t, b.cfg)
	storetest.Populate(t, b.store)
	b.want, b.wantRows = storetest.Read(t, b.store), tableRows(t, b.store)
	if len(b.want.Policies) != 40 || len(b.want.Tags) < 17 || len(b.want.SecurityGroups) != 4 {
		t.Fatalf("populated %d policies, %d tags, %d security groups", len(b.want.Policies), len(b.want.Tags), len(b.want.SecurityGroups))
	}
	b.runner = bbr.Runner{Tools: bbr.DefaultTools, Log: b.log}
	b.artifact = filepath.Join(t.TempDir(), "cfnetworking-artifact-file")
	if err := b.runner.Backup(context.Background(), sdkConfig(b.cfg), b.artifact); err != nil {
		t.Fatalf("backup: %v\n%s", err, b.log.String())
	}
	return b
}

// TestRestoreIntoEmptyDatabase backs up a populated policy database the way
// bbr-cfnetworkingdb's backup script does (the SDK's pg_dump and mysqldump
// command lines; SQLite's VACUUM INTO), restores it into a new, empty
// database as the restore script does, and reads everything back through
// netman's store.
func TestRestoreIntoEmptyDatabase(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		b := backedUp(t, dbType)
		want, wantRows, runner, log, artifact := b.want, b.wantRows, b.runner, b.log, b.artifact

		dstConfig := dbtest.NewConfig(t, dbType)
		if err := runner.Restore(ctx, sdkConfig(dstConfig), artifact); err != nil {
			t.Fatalf("restore: %v\n%s", err, log.String())
		}
		dst := storetest.OpenStore(t, dstConfig)
		checkSame(t, "what the store reads", want, storetest.Read(t, dst))
		checkSame(t, "rows", wantRows, tableRows(t, dst))
		checkUpToDate(t, dst)

		// The restored database works: tags are assigned after the
		// restored ones, policies are written and read.
		tag, err := dst.CreateTag(ctx, "after-restore", "router")
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(want.Tags, func(t policy.Tag) bool { return t.Tag == tag.Tag }) {
			t.Errorf("a new tag %s reuses a restored one", tag.Tag)
		}
		if err := dst.Create(ctx, []policy.Policy{policy.NewPolicy("app-new", "app-00", "tcp", 9000, 9000)}); err != nil {
			t.Fatal(err)
		}
		if got := storetest.Read(t, dst); len(got.Policies) != len(want.Policies)+1 {
			t.Errorf("after a create: %d policies, want %d", len(got.Policies), len(want.Policies)+1)
		}
	})
}

// TestRestoreOverChangedDatabase restores into the database the backup was
// taken from after it moved on, as a BBR restore of a deployment does:
// the database is as it was at the backup, and a policy server that kept
// its connection reads the restored state. Before that, an artifact that is
// not a backup fails the restore and leaves the database as it was.
func TestRestoreOverChangedDatabase(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		b := backedUp(t, dbType)
		s, cfg, want, wantRows, runner, log, artifact := b.store, b.cfg, b.want, b.wantRows, b.runner, b.log, b.artifact
		if err := s.Delete(ctx, want.Policies[:10]); err != nil {
			t.Fatal(err)
		}
		if err := s.Create(ctx, []policy.Policy{policy.NewPolicy("app-late", "app-01", "udp", 53, 53)}); err != nil {
			t.Fatal(err)
		}
		if err := s.ReplaceSecurityGroups(ctx, want.SecurityGroups[:1]); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateTag(ctx, "late-router", "router"); err != nil {
			t.Fatal(err)
		}

		changed, changedRows := storetest.Read(t, s), tableRows(t, s)
		garbage := filepath.Join(t.TempDir(), "not-a-backup")
		if err := os.WriteFile(garbage, []byte("this is not a backup\x00\x01\x02 DROP TABLE policies;\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := runner.Restore(ctx, sdkConfig(cfg), garbage)
		if err == nil {
			t.Fatal("restoring garbage succeeded")
		}
		if !strings.Contains(err.Error(), "restoring "+dbType+" database") {
			t.Errorf("error %q does not say what failed", err)
		}
		checkSame(t, "after restoring garbage", changed, storetest.Read(t, s))
		checkSame(t, "rows after restoring garbage", changedRows, tableRows(t, s))

		if err := runner.Restore(ctx, sdkConfig(cfg), artifact); err != nil {
			t.Fatalf("restore: %v\n%s", err, log.String())
		}
		checkSame(t, "what the running store reads", want, storetest.Read(t, s))
		checkSame(t, "rows", wantRows, tableRows(t, s))
		checkUpToDate(t, s)
	})
}

// TestSQLiteBackupOfMissingDatabase: backing up a database file that does
// not exist fails and writes no artifact (an empty backup would restore as
// an empty policy database).
func TestSQLiteBackupOfMissingDatabase(t *testing.T) {
	dir := t.TempDir()
	artifact := filepath.Join(dir, "artifact")
	err := bbr.Runner{}.Backup(context.Background(), bbr.Config{Adapter: "sqlite", Database: filepath.Join(dir, "missing.db")}, artifact)
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("err = %v, want no such file", err)
	}
	if _, err := os.Stat(artifact); !os.IsNotExist(err) {
		t.Errorf("an artifact was written: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 0 {
		t.Errorf("left files behind: %v", entries)
	}
}
