package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/netman-release/netman/src/sqldb"
)

// Upstream's migration ids, in the order sql-migrate applies them: numeric
// prefix, then string order (1 < 1a < 1b < 2 < 2a ...).
//
// Migrations 1–3 once were single multi-statement migrations and were later
// split (1 → 1, 1a, 1b; 2 → 2 .. 2f; 3 → 3, 3a). A database migrated by the
// old form has only "1", "2" or "3" recorded, with the whole effect already
// applied; legacyForms detects that (as upstream does) and turns the later
// parts into empty migrations, which are still recorded.
//
// Migrations 4–64 built the dynamic-egress tables that 68–74 drop. Their
// intermediate shapes cannot matter to a database that goes on to 74, so
// they are recorded without statements; an upstream database left anywhere
// in that range still ends at the same schema, because 68–74 drop whatever
// egress tables it has. The MySQL steps with a lasting effect (63's
// procedure clean-up, 65's foreign key, 66's procedure drop) are kept.

type legacy struct{ v1, v2, v3 bool }

func migrations(l legacy) []sqldb.Migration {
	var ms []sqldb.Migration
	add := func(id string, s sqldb.ByDialect) {
		ms = append(ms, sqldb.Migration{ID: id, Up: func(d *sqldb.Dialect) []string { return d.Pick(s) }})
	}
	all := func(stmts ...string) sqldb.ByDialect {
		return sqldb.ByDialect{Postgres: stmts, MySQL: stmts, SQLite: stmts}
	}
	none := sqldb.ByDialect{}

	// 1, 1a, 1b: the tag pool, destinations and policies.
	if l.v1 {
		add("1", concat(groupsTable, destinationsTable, policiesTable))
		add("1a", none)
		add("1b", none)
	} else {
		add("1", groupsTable)
		add("1a", destinationsTable)
		add("1b", policiesTable)
	}

	// 2 .. 2f: port ranges; the unique key moves from port to the range.
	v2 := []sqldb.ByDialect{
		all(`ALTER TABLE destinations ADD COLUMN start_port int`),
		all(`ALTER TABLE destinations ADD COLUMN end_port int`),
		all(`UPDATE destinations SET start_port = port`),
		all(`UPDATE destinations SET end_port = port`),
		dropPortUniqueKey,
		callDropPortUniqueKey,
		uniqueDestination,
	}
	ids2 := []string{"2", "2a", "2b", "2c", "2d", "2e", "2f"}
	if l.v2 {
		add("2", concat(v2...))
		for _, id := range ids2[1:] {
			add(id, none)
		}
	} else {
		for i, id := range ids2 {
			add(id, v2[i])
		}
	}

	// 3, 3a: group types (app, router, ...).
	groupType := sqldb.ByDialect{
		Postgres: []string{`ALTER TABLE "groups" ADD COLUMN type text DEFAULT 'app'`},
		MySQL:    []string{`ALTER TABLE "groups" ADD COLUMN type varchar(255) DEFAULT 'app'`},
		SQLite:   []string{`ALTER TABLE "groups" ADD COLUMN type text DEFAULT 'app'`},
	}
	typeIndex := all(`CREATE INDEX idx_type ON "groups" (type)`)
	if l.v3 {
		add("3", concat(groupType, typeIndex))
		add("3a", none)
	} else {
		add("3", groupType)
		add("3a", typeIndex)
	}

	for i := 4; i <= lastMigration; i++ {
		add(strconv.Itoa(i), later[i])
	}
	return ms
}

var groupsTable = sqldb.ByDialect{
	Postgres: []string{`CREATE TABLE IF NOT EXISTS "groups" (
		id SERIAL PRIMARY KEY,
		guid text,
		UNIQUE (guid)
	)`},
	MySQL: []string{`CREATE TABLE IF NOT EXISTS "groups" (
		id int NOT NULL AUTO_INCREMENT,
		guid varchar(255),
		UNIQUE (guid),
		PRIMARY KEY (id)
	)`},
	SQLite: []string{`CREATE TABLE IF NOT EXISTS "groups" (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		guid text,
		UNIQUE (guid)
	)`},
}

// SQLite cannot drop a table constraint, so its original (group_id, port,
// protocol) key is a named index that 2d can drop.
var destinationsTable = sqldb.ByDialect{
	Postgres: []string{`CREATE TABLE IF NOT EXISTS destinations (
		id SERIAL PRIMARY KEY,
		group_id int REFERENCES "groups" (id),
		port int,
		protocol text,
		UNIQUE (group_id, port, protocol)
	)`},
	MySQL: []string{`CREATE TABLE IF NOT EXISTS destinations (
		id int NOT NULL AUTO_INCREMENT,
		group_id int REFERENCES "groups" (id),
		port int,
		protocol varchar(255),
		UNIQUE (group_id, port, protocol),
		PRIMARY KEY (id)
	)`},
	SQLite: []string{
		`CREATE TABLE IF NOT EXISTS destinations (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			group_id int REFERENCES "groups" (id),
			port int,
			protocol text
		)`,
		`CREATE UNIQUE INDEX IF NOT EXISTS destinations_group_id_port_protocol_key ON destinations (group_id, port, protocol)`,
	},
}

var policiesTable = sqldb.ByDialect{
	Postgres: []string{`CREATE TABLE IF NOT EXISTS policies (
		id SERIAL PRIMARY KEY,
		group_id int REFERENCES "groups" (id),
		destination_id int REFERENCES destinations (id),
		UNIQUE (group_id, destination_id)
	)`},
	MySQL: []string{`CREATE TABLE IF NOT EXISTS policies (
		id int NOT NULL AUTO_INCREMENT,
		group_id int REFERENCES "groups" (id),
		destination_id int REFERENCES destinations (id),
		UNIQUE (group_id, destination_id),
		PRIMARY KEY (id)
	)`},
	SQLite: []string{`CREATE TABLE IF NOT EXISTS policies (
		id INTEGER PRIMARY KEY AUTOINCREMENT,
		group_id int REFERENCES "groups" (id),
		destination_id int REFERENCES destinations (id),
		UNIQUE (group_id, destination_id)
	)`},
}

// 2d: drop the unique key on destinations.port. MySQL does it through a
// stored procedure (called by 2e, dropped by 66), which first drops a
// foreign key on group_id (MariaDB honours inline REFERENCES) that would
// otherwise pin the index.
var dropPortUniqueKey = sqldb.ByDialect{
	Postgres: []string{`DO $$
DECLARE r record;
BEGIN
	FOR r IN SELECT DISTINCT k.constraint_name FROM information_schema.key_column_usage k
		WHERE k.table_schema = current_schema() AND k.table_name = 'destinations' AND k.column_name = 'port'
	LOOP
		EXECUTE 'ALTER TABLE destinations DROP CONSTRAINT ' || quote_ident(r.constraint_name);
	END LOOP;
END $$`},
	MySQL: []string{`CREATE PROCEDURE drop_destination_index()
BEGIN
	DECLARE fk varchar(64) DEFAULT NULL;
	DECLARE idx varchar(64) DEFAULT NULL;
	SELECT constraint_name INTO fk FROM information_schema.key_column_usage
		WHERE table_schema = DATABASE() AND table_name = 'destinations' AND column_name = 'group_id'
		AND referenced_table_name IS NOT NULL LIMIT 1;
	IF fk IS NOT NULL THEN
		SET @netman_stmt = CONCAT('ALTER TABLE destinations DROP FOREIGN KEY "', fk, '"');
		PREPARE s FROM @netman_stmt;
		EXECUTE s;
		DEALLOCATE PREPARE s;
	END IF;
	SELECT index_name INTO idx FROM information_schema.statistics
		WHERE table_schema = DATABASE() AND table_name = 'destinations' AND column_name = 'port'
		AND non_unique = 0 LIMIT 1;
	IF idx IS NOT NULL THEN
		SET @netman_stmt = CONCAT('ALTER TABLE destinations DROP INDEX "', idx, '"');
		PREPARE s FROM @netman_stmt;
		EXECUTE s;
		DEALLOCATE PREPARE s;
	END IF;
	SET @netman_stmt = NULL;
END`},
	SQLite: []string{`DROP INDEX IF EXISTS destinations_group_id_port_protocol_key`},
}

var callDropPortUniqueKey = sqldb.ByDialect{MySQL: []string{`CALL drop_destination_index()`}}

var uniqueDestination = sqldb.ByDialect{
	Postgres: []string{`ALTER TABLE destinations ADD CONSTRAINT unique_destination UNIQUE (group_id, start_port, end_port, protocol)`},
	MySQL:    []string{`ALTER TABLE destinations ADD UNIQUE KEY unique_destination (group_id, start_port, end_port, protocol)`},
	SQLite:   []string{`CREATE UNIQUE INDEX IF NOT EXISTS unique_destination ON destinations (group_id, start_port, end_port, protocol)`},
}

// lastMigration is the newest upstream migration netman applies. Upstream
// goes on after 81 (82–84 add MySQL 8 multi-valued indexes MariaDB cannot
// build, 85–91 the hash column and space tables of its newer syncer); ids
// netman does not know are ignored when recorded, so a database upstream
// migrated further still opens.
const lastMigration = 81

// later holds migrations 4–81 with statements; the ids missing here are
// recorded with none (see the package comment above).
var later = map[int]sqldb.ByDialect{
	63: {MySQL: []string{`DROP PROCEDURE IF EXISTS drop_terminal_guid_unique_index`}},
	65: {MySQL: []string{`ALTER TABLE policies ADD CONSTRAINT policies_destination_id_fkey FOREIGN KEY (destination_id) REFERENCES destinations (id)`}},
	66: {MySQL: []string{`DROP PROCEDURE IF EXISTS drop_destination_index`}},
	67: {
		Postgres: []string{`CREATE TABLE IF NOT EXISTS security_groups (
			id SERIAL PRIMARY KEY,
			guid varchar(36) NOT NULL,
			name varchar(255) NOT NULL,
			rules text,
			staging_default bool DEFAULT false,
			running_default bool DEFAULT false,
			staging_spaces jsonb,
			running_spaces jsonb,
			UNIQUE (guid)
		)`},
		MySQL: []string{`CREATE TABLE IF NOT EXISTS security_groups (
			id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
			guid varchar(36) NOT NULL,
			name varchar(255) NOT NULL,
			rules mediumtext,
			staging_default bool DEFAULT false,
			running_default bool DEFAULT false,
			staging_spaces json,
			running_spaces json,
			UNIQUE (guid)
		)`},
		SQLite: []string{`CREATE TABLE IF NOT EXISTS security_groups (
			id INTEGER PRIMARY KEY AUTOINCREMENT,
			guid varchar(36) NOT NULL,
			name varchar(255) NOT NULL,
			rules text,
			staging_default bool DEFAULT false,
			running_default bool DEFAULT false,
			staging_spaces text,
			running_spaces text,
			UNIQUE (guid)
		)`},
	},
	68: dropTable("apps"),
	69: dropTable("destination_metadatas"),
	70: dropTable("ip_ranges"),
	71: dropTable("spaces"),
	72: dropTable("egress_policies"),
	73: dropTable("defaults"),
	74: dropTable("terminals"),
	75: {
		Postgres: []string{`ALTER TABLE security_groups ALTER COLUMN id TYPE bigint`},
		MySQL:    []string{`ALTER TABLE security_groups MODIFY id bigint NOT NULL AUTO_INCREMENT`},
	},
	76: {Postgres: []string{`ALTER SEQUENCE security_groups_id_seq AS bigint MAXVALUE 9223372036854775807`}},
	77: {
		Postgres: []string{`CREATE TABLE IF NOT EXISTS policies_info (id SERIAL PRIMARY KEY, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`},
		MySQL:    []string{`CREATE TABLE IF NOT EXISTS policies_info (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`},
		SQLite:   []string{`CREATE TABLE IF NOT EXISTS policies_info (id INTEGER PRIMARY KEY AUTOINCREMENT, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`},
	},
	// Idempotent, so a second migrator racing the first does not add a
	// second row.
	78: {
		Postgres: []string{`INSERT INTO policies_info (last_updated) SELECT CURRENT_TIMESTAMP WHERE NOT EXISTS (SELECT 1 FROM policies_info)`},
		MySQL:    []string{`INSERT INTO policies_info (last_updated) SELECT CURRENT_TIMESTAMP FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM policies_info)`},
		SQLite:   []string{`INSERT INTO policies_info (last_updated) SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE NOT EXISTS (SELECT 1 FROM policies_info)`},
	},
	79: {MySQL: []string{`ALTER TABLE policies_info MODIFY last_updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)`}},
	// 80, 81: upstream's security_groups_info, the version stamp of the
	// security_groups table (security_groups_last_updated), added after
	// v3.53.0. Same columns as policies_info, microseconds from the start.
	80: {
		Postgres: []string{`CREATE TABLE IF NOT EXISTS security_groups_info (id SERIAL PRIMARY KEY, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`},
		MySQL:    []string{`CREATE TABLE IF NOT EXISTS security_groups_info (id int NOT NULL AUTO_INCREMENT PRIMARY KEY, last_updated TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6))`},
		SQLite:   []string{`CREATE TABLE IF NOT EXISTS security_groups_info (id INTEGER PRIMARY KEY AUTOINCREMENT, last_updated TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP)`},
	},
	// Idempotent, as 78.
	81: {
		Postgres: []string{`INSERT INTO security_groups_info (last_updated) SELECT CURRENT_TIMESTAMP WHERE NOT EXISTS (SELECT 1 FROM security_groups_info)`},
		MySQL:    []string{`INSERT INTO security_groups_info (last_updated) SELECT CURRENT_TIMESTAMP(6) FROM DUAL WHERE NOT EXISTS (SELECT 1 FROM security_groups_info)`},
		SQLite:   []string{`INSERT INTO security_groups_info (last_updated) SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE NOT EXISTS (SELECT 1 FROM security_groups_info)`},
	},
}

func dropTable(name string) sqldb.ByDialect {
	stmt := []string{`DROP TABLE IF EXISTS ` + name}
	return sqldb.ByDialect{Postgres: stmt, MySQL: stmt, SQLite: stmt}
}

func concat(parts ...sqldb.ByDialect) sqldb.ByDialect {
	var out sqldb.ByDialect
	for _, p := range parts {
		out.Postgres = append(out.Postgres, p.Postgres...)
		out.MySQL = append(out.MySQL, p.MySQL...)
		out.SQLite = append(out.SQLite, p.SQLite...)
	}
	return out
}

// MigrationIDs lists every migration id in the order it is applied; all of
// them end up in gorp_migrations.
func MigrationIDs() []string {
	ms := migrations(legacy{})
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// Migrate brings the database to upstream's schema as of migration 81,
// recognising a database migrated by upstream, including one migrated with
// the old single-migration forms of 1–3, and returns how many migrations it
// applied.
func Migrate(ctx context.Context, db *sqldb.DB) (int, error) {
	l, err := legacyForms(ctx, db)
	if err != nil {
		return 0, fmt.Errorf("inspecting migration history: %w", err)
	}
	return sqldb.Migrate(ctx, db, migrations(l))
}

// legacyForms applies upstream's tests for the old forms of 1–3: the id is
// recorded and the schema object only the old form (or the last split part)
// creates exists.
func legacyForms(ctx context.Context, db *sqldb.DB) (legacy, error) {
	d := db.Dialect()
	var l legacy
	ok, err := d.HasTable(ctx, db, "gorp_migrations")
	if err != nil || !ok {
		return l, err
	}
	var ids []string
	if err := db.SelectContext(ctx, &ids, `SELECT id FROM gorp_migrations WHERE id IN ('1', '2', '3')`); err != nil {
		return l, err
	}
	recorded := map[string]bool{}
	for _, id := range ids {
		recorded[id] = true
	}
	if recorded["1"] {
		dst, err := d.HasTable(ctx, db, "destinations")
		if err != nil {
			return l, err
		}
		pol, err := d.HasTable(ctx, db, "policies")
		if err != nil {
			return l, err
		}
		l.v1 = dst && pol
	}
	if recorded["2"] {
		if l.v2, err = d.HasIndex(ctx, db, "destinations", "unique_destination"); err != nil {
			return l, err
		}
	}
	if recorded["3"] {
		if l.v3, err = d.HasIndex(ctx, db, "groups", "idx_type"); err != nil {
			return l, err
		}
	}
	return l, nil
}
