package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// upstreamFinal is the schema an upstream policy server leaves after its
// last migration, written by hand from the schema description (upstream
// never ran on SQLite; netman's own shape stands in for it there).
func upstreamFinal(dbType string) []string {
	switch dbType {
	case sqldb.TypePostgres:
		return []string{
			`CREATE TABLE gorp_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamp with time zone NULL)`,
			`CREATE TABLE groups (id SERIAL PRIMARY KEY, guid text, type text DEFAULT 'app', UNIQUE (guid))`,
			`CREATE INDEX idx_type ON groups (type)`,
			`CREATE TABLE destinations (id SERIAL PRIMARY KEY, group_id int REFERENCES groups(id), port int, protocol text, start_port int, end_port int,
				CONSTRAINT unique_destination UNIQUE (group_id, start_port, end_port, protocol))`,
			`CREATE TABLE policies (id SERIAL PRIMARY KEY, group_id int REFERENCES groups(id), destination_id int REFERENCES destinations(id), UNIQUE (group_id, destination_id))`,
			`CREATE TABLE security_groups (id BIGSERIAL PRIMARY KEY, guid varchar(36) NOT NULL, name varchar(255) NOT NULL, rules text,
				staging_default bool DEFAULT false, running_default bool DEFAULT false, staging_spaces jsonb, running_spaces jsonb, UNIQUE (guid))`,
			`CREATE TABLE policies_info (id SERIAL PRIMARY KEY, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
		}
	case sqldb.TypeMySQL:
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE "groups" (id int NOT NULL AUTO_INCREMENT, guid varchar(255), type varchar(255) DEFAULT 'app', UNIQUE (guid), PRIMARY KEY (id), KEY idx_type (type))`,
			`CREATE TABLE destinations (id int NOT NULL AUTO_INCREMENT, group_id int, port int, protocol varchar(255), start_port int, end_port int,
				PRIMARY KEY (id), UNIQUE KEY unique_destination (group_id, start_port, end_port, protocol))`,
			`CREATE TABLE policies (id int NOT NULL AUTO_INCREMENT, group_id int, destination_id int, UNIQUE (group_id, destination_id), PRIMARY KEY (id),
				CONSTRAINT policies_destination_id_fkey FOREIGN KEY (destination_id) REFERENCES destinations (id))`,
			`CREATE TABLE security_groups (id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY, guid varchar(36) NOT NULL, name varchar(255) NOT NULL, rules mediumtext,
				staging_default bool DEFAULT false, running_default bool DEFAULT false, staging_spaces json, running_spaces json, UNIQUE (guid))`,
			`CREATE TABLE policies_info (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, last_updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`,
		}
	default:
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE "groups" (id INTEGER PRIMARY KEY AUTOINCREMENT, guid text, type text DEFAULT 'app', UNIQUE (guid))`,
			`CREATE INDEX idx_type ON "groups" (type)`,
			`CREATE TABLE destinations (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id int REFERENCES "groups" (id), port int, protocol text, start_port int, end_port int)`,
			`CREATE UNIQUE INDEX unique_destination ON destinations (group_id, start_port, end_port, protocol)`,
			`CREATE TABLE policies (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id int REFERENCES "groups" (id), destination_id int REFERENCES destinations (id), UNIQUE (group_id, destination_id))`,
			`CREATE TABLE security_groups (id INTEGER PRIMARY KEY AUTOINCREMENT, guid varchar(36) NOT NULL, name varchar(255) NOT NULL, rules text,
				staging_default bool DEFAULT false, running_default bool DEFAULT false, staging_spaces text, running_spaces text, UNIQUE (guid))`,
			`CREATE TABLE policies_info (id INTEGER PRIMARY KEY AUTOINCREMENT, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`,
		}
	}
}

// upstreamAtMigration1 is an upstream database from before port ranges:
// only migration "1" ran, in its original single form.
func upstreamAtMigration1(dbType string) []string {
	switch dbType {
	case sqldb.TypePostgres:
		return []string{
			`CREATE TABLE gorp_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamp with time zone NULL)`,
			`CREATE TABLE groups (id SERIAL PRIMARY KEY, guid text, UNIQUE (guid))`,
			`CREATE TABLE destinations (id SERIAL PRIMARY KEY, group_id int REFERENCES groups(id), port int, protocol text, UNIQUE (group_id, port, protocol))`,
			`CREATE TABLE policies (id SERIAL PRIMARY KEY, group_id int REFERENCES groups(id), destination_id int REFERENCES destinations(id), UNIQUE (group_id, destination_id))`,
		}
	case sqldb.TypeMySQL:
		// Inline REFERENCES: ignored by MySQL, a real foreign key on MariaDB.
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE "groups" (id int NOT NULL AUTO_INCREMENT, guid varchar(255), UNIQUE (guid), PRIMARY KEY (id))`,
			`CREATE TABLE destinations (id int NOT NULL AUTO_INCREMENT, group_id int REFERENCES "groups" (id), port int, protocol varchar(255), UNIQUE (group_id, port, protocol), PRIMARY KEY (id))`,
			`CREATE TABLE policies (id int NOT NULL AUTO_INCREMENT, group_id int REFERENCES "groups" (id), destination_id int REFERENCES destinations (id), UNIQUE (group_id, destination_id), PRIMARY KEY (id))`,
		}
	default:
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE "groups" (id INTEGER PRIMARY KEY AUTOINCREMENT, guid text, UNIQUE (guid))`,
			`CREATE TABLE destinations (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id int REFERENCES "groups" (id), port int, protocol text)`,
			`CREATE UNIQUE INDEX destinations_group_id_port_protocol_key ON destinations (group_id, port, protocol)`,
			`CREATE TABLE policies (id INTEGER PRIMARY KEY AUTOINCREMENT, group_id int REFERENCES "groups" (id), destination_id int REFERENCES destinations (id), UNIQUE (group_id, destination_id))`,
		}
	}
}

func execAll(t *testing.T, db *sqldb.DB, stmts ...string) {
	t.Helper()
	for _, stmt := range stmts {
		if _, err := db.ExecContext(context.Background(), stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
}

func record(t *testing.T, db *sqldb.DB, ids ...string) {
	t.Helper()
	for _, id := range ids {
		execAll(t, db, `INSERT INTO gorp_migrations (id, applied_at) VALUES ('`+id+`', CURRENT_TIMESTAMP)`)
	}
}

// seedUpstreamData fills an upstream database with a pool of 20 tags and
// a little of everything: a freed tag (2), a router tag, two policies, a
// security group and a version stamp.
func seedUpstreamData(t *testing.T, db *sqldb.DB) {
	t.Helper()
	for range 20 {
		execAll(t, db, `INSERT INTO "groups" (guid) VALUES (NULL)`)
	}
	execAll(t, db,
		`UPDATE "groups" SET guid = 'app-a', type = 'app' WHERE id = 1`,
		`UPDATE "groups" SET guid = NULL, type = NULL WHERE id = 2`,
		`UPDATE "groups" SET guid = 'app-b', type = 'app' WHERE id = 3`,
		`UPDATE "groups" SET guid = 'router-x', type = 'router' WHERE id = 4`,
		`INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES (3, 8080, 8080, 8080, 'tcp')`,
		`INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES (1, 0, 5000, 6000, 'udp')`,
		`INSERT INTO policies (group_id, destination_id) VALUES (1, 1)`,
		`INSERT INTO policies (group_id, destination_id) VALUES (3, 2)`,
		`INSERT INTO security_groups (guid, name, rules, staging_default, running_default, staging_spaces, running_spaces)
			VALUES ('sg-1', 'public', '[]', false, true, '["space-1"]', '[]')`,
		`INSERT INTO policies_info (last_updated) VALUES ('2024-01-02 03:04:05.123')`,
	)
}

func legacyIDs() []string {
	ids := []string{"1", "2", "3"}
	for i := 4; i <= 79; i++ {
		ids = append(ids, strconv.Itoa(i))
	}
	return ids
}

// idsTo79 are the ids upstream v3.53.0 records (split forms of 1–3).
func idsTo79() []string {
	var ids []string
	for _, id := range store.MigrationIDs() {
		if id != "80" && id != "81" {
			ids = append(ids, id)
		}
	}
	return ids
}

// newerUpstream is what a newer upstream adds after 79: security_groups_info
// with its row (80, 81), and the records of later migrations netman does not
// apply (82–91).
func newerUpstream(t *testing.T, db *sqldb.DB, dbType string) {
	t.Helper()
	switch dbType {
	case sqldb.TypePostgres:
		execAll(t, db, `CREATE TABLE security_groups_info (id SERIAL PRIMARY KEY, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`)
	case sqldb.TypeMySQL:
		execAll(t, db, `CREATE TABLE security_groups_info (id int NOT NULL AUTO_INCREMENT, PRIMARY KEY (id), last_updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`)
	default:
		execAll(t, db, `CREATE TABLE security_groups_info (id INTEGER PRIMARY KEY AUTOINCREMENT, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`)
	}
	execAll(t, db, `INSERT INTO security_groups_info (last_updated) VALUES ('2024-05-06 07:08:09.123')`)
	for i := 80; i <= 91; i++ {
		record(t, db, strconv.Itoa(i))
	}
}

func TestAdoptsAnUpstreamDatabase(t *testing.T) {
	for _, tc := range []struct {
		name        string
		recorded    []string
		newer       bool
		wantApplied int
	}{
		// Migrated by a release that still had the single forms of 1–3:
		// the split parts are recorded as empty migrations.
		{"migrated with the single forms of 1-3", legacyIDs(), false, 11},
		{"migrated with the split forms (v3.53.0)", idsTo79(), false, 2},
		{"migrated by a newer upstream (to 91)", idsTo79(), true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dbtest.EachDialect(t, func(t *testing.T, dbType string) {
				ctx := context.Background()
				db := openDB(t, dbType, 4)
				execAll(t, db, upstreamFinal(dbType)...)
				record(t, db, tc.recorded...)
				if tc.newer {
					newerUpstream(t, db, dbType)
				}
				seedUpstreamData(t, db)

				applied, err := store.Migrate(ctx, db)
				if err != nil || applied != tc.wantApplied {
					t.Fatalf("migrate applied %d, %v; want %d", applied, err, tc.wantApplied)
				}
				var recorded []string
				if err := db.SelectContext(ctx, &recorded, `SELECT id FROM gorp_migrations`); err != nil {
					t.Fatal(err)
				}
				have := map[string]bool{}
				for _, id := range recorded {
					have[id] = true
				}
				for _, id := range store.MigrationIDs() {
					if !have[id] {
						t.Errorf("migration %s not recorded", id)
					}
				}
				if err := store.PopulateTables(ctx, db, 2); err != nil {
					t.Fatal(err)
				}
				s := store.New(db, 2, nil)
				checkAdopted(t, s, 20)
				var rows int
				if err := db.GetContext(ctx, &rows, `SELECT COUNT(*) FROM security_groups_info`); err != nil || rows != 1 {
					t.Errorf("security_groups_info has %d rows (%v), want 1", rows, err)
				}
				before, err := s.SecurityGroupsLastUpdated(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.ReplaceSecurityGroups(ctx, nil); err != nil {
					t.Fatal(err)
				}
				if after, _ := s.SecurityGroupsLastUpdated(ctx); after <= before {
					t.Errorf("emptying the adopted table left security_groups_last_updated at %d (was %d)", after, before)
				}
			})
		})
	}
}

func checkAdopted(t *testing.T, s *store.Store, poolSize int) {
	t.Helper()
	ctx := context.Background()
	want := sortPolicies([]policy.Policy{
		withTags(v1("app-a", "app-b", "tcp", 8080, 8080), "0001", "0003"),
		withTags(v1("app-b", "app-a", "udp", 5000, 6000), "0003", "0001"),
	})
	if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
		t.Errorf("policies after adoption (-want +got):\n%s", diff)
	}
	tags, err := s.Tags(ctx)
	wantTags := []policy.Tag{{ID: "app-a", Tag: "0001", Type: "app"}, {ID: "app-b", Tag: "0003", Type: "app"}, {ID: "router-x", Tag: "0004", Type: "router"}}
	if err != nil || !gocmp.Equal(wantTags, tags) {
		t.Errorf("tags after adoption = %v, %v; want %v", tags, err, wantTags)
	}
	if last, err := s.LastUpdated(ctx); err != nil || last != time.Date(2024, 1, 2, 3, 4, 5, 123000000, time.UTC).UnixNano() {
		t.Errorf("LastUpdated after adoption = %d, %v", last, err)
	}
	sgs, _, err := s.SecurityGroupsBySpaceGuids(ctx, []string{"space-1"}, store.Page{})
	if err != nil || len(sgs) != 1 || sgs[0].GUID != "sg-1" || !sgs[0].RunningDefault || !gocmp.Equal(sgs[0].StagingSpaceGUIDs, []string{"space-1"}) {
		t.Errorf("security groups after adoption = %+v, %v", sgs, err)
	}

	// Writes carry on: the freed tag 2 is the lowest free one.
	mustCreate(t, s, v1("app-c", "app-a", "tcp", 8080, 8080))
	got, _ := s.ByGuids(ctx, []string{"app-c"}, nil, false)
	if len(got) != 1 || got[0].Source.Tag != "0002" {
		t.Errorf("new app after adoption: %+v, want tag 0002", got)
	}
	mustDelete(t, s, v1("app-a", "app-b", "tcp", 8080, 8080), v1("app-b", "app-a", "udp", 5000, 6000))
	var free int
	_ = s.DB().GetContext(ctx, &free, `SELECT COUNT(*) FROM "groups" WHERE guid IS NULL`)
	if free != poolSize-3 { // app-a (still a destination), app-c, router-x
		t.Errorf("%d free tags after deleting, want %d", free, poolSize-3)
	}
}

// An upstream database left at migration 1 (single form, before port
// ranges) is carried through every later migration with its data.
func TestMigratesAnUpstreamDatabaseFromMigration1(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		db := openDB(t, dbType, 4)
		execAll(t, db, upstreamAtMigration1(dbType)...)
		record(t, db, "1")
		for range 20 {
			execAll(t, db, `INSERT INTO "groups" (guid) VALUES (NULL)`)
		}
		execAll(t, db,
			`UPDATE "groups" SET guid = 'app-a' WHERE id = 1`,
			`UPDATE "groups" SET guid = 'app-b' WHERE id = 2`,
			`INSERT INTO destinations (group_id, port, protocol) VALUES (2, 8080, 'tcp')`,
			`INSERT INTO destinations (group_id, port, protocol) VALUES (1, 53, 'udp')`,
			`INSERT INTO policies (group_id, destination_id) VALUES (1, 1)`,
			`INSERT INTO policies (group_id, destination_id) VALUES (2, 2)`,
		)

		applied, err := store.Migrate(ctx, db)
		if want := len(store.MigrationIDs()) - 1; err != nil || applied != want {
			t.Fatalf("migrate applied %d, %v; want %d", applied, err, want)
		}
		s := store.New(db, 2, nil)
		want := sortPolicies([]policy.Policy{
			withTags(v1("app-a", "app-b", "tcp", 8080, 8080), "0001", "0002"),
			withTags(v1("app-b", "app-a", "udp", 53, 53), "0002", "0001"),
		})
		if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
			t.Fatalf("policies after migrating (-want +got):\n%s", diff)
		}
		tags, _ := s.Tags(ctx)
		if len(tags) != 2 || tags[0].Type != "app" || tags[1].Type != "app" {
			t.Errorf("tags after migrating: %v, want type app (the column default)", tags)
		}
		// The port-only key is gone: a range sharing the start port is a
		// new destination, and an exact duplicate is still idempotent.
		mustCreate(t, s, v1("app-a", "app-b", "tcp", 8080, 8090), v1("app-a", "app-b", "tcp", 8080, 8080))
		if got := mustAll(t, s); len(got) != 3 {
			t.Errorf("after adding a range: %v", got)
		}
		if _, err := s.LastUpdated(ctx); err != nil {
			t.Errorf("LastUpdated: %v", err)
		}
		ok, err := db.Dialect().HasIndex(ctx, db, "destinations", "unique_destination")
		if err != nil || !ok {
			t.Errorf("unique_destination present = %v, %v", ok, err)
		}
		// Migrating again is a no-op.
		if n, err := store.Migrate(ctx, db); err != nil || n != 0 {
			t.Errorf("second migrate applied %d, %v", n, err)
		}
	})
}

// A fresh database gets the same schema objects upstream's would.
func TestFreshSchema(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		db := openDB(t, dbType, 4)
		n, err := store.Migrate(ctx, db)
		if err != nil || n != len(store.MigrationIDs()) {
			t.Fatalf("migrate applied %d, %v", n, err)
		}
		d := db.Dialect()
		for _, table := range []string{"groups", "destinations", "policies", "security_groups", "policies_info", "gorp_migrations"} {
			if ok, err := d.HasTable(ctx, db, table); err != nil || !ok {
				t.Errorf("table %s: %v, %v", table, ok, err)
			}
		}
		for _, table := range []string{"terminals", "egress_policies", "ip_ranges", "apps", "spaces", "destination_metadatas", "defaults"} {
			if ok, _ := d.HasTable(ctx, db, table); ok {
				t.Errorf("legacy table %s exists", table)
			}
		}
		for _, idx := range [][2]string{{"destinations", "unique_destination"}, {"groups", "idx_type"}} {
			if ok, err := d.HasIndex(ctx, db, idx[0], idx[1]); err != nil || !ok {
				t.Errorf("index %s on %s: %v, %v", idx[1], idx[0], ok, err)
			}
		}
		var rows int
		if err := db.GetContext(ctx, &rows, `SELECT COUNT(*) FROM policies_info`); err != nil || rows != 1 {
			t.Errorf("policies_info rows = %d, %v", rows, err)
		}
		// The original (group_id, port, protocol) key is gone.
		execAll(t, db, `INSERT INTO "groups" (guid) VALUES ('g')`,
			`INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES (1, 0, 1, 2, 'tcp')`,
			`INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES (1, 0, 1, 3, 'tcp')`)
		_, err = db.ExecContext(ctx, `INSERT INTO destinations (group_id, port, start_port, end_port, protocol) VALUES (1, 0, 1, 3, 'tcp')`)
		if err == nil {
			t.Error("duplicate destination accepted")
		}
	})
}
