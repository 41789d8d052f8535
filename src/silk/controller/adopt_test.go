package controller

import (
	"context"
	"testing"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// upstreamSchema is what an upstream silk-controller leaves in its database:
// sql-migrate's bookkeeping table with migration "1" applied, and the
// subnets table in upstream's own DDL.
func upstreamSchema(dbType string) []string {
	switch dbType {
	case sqldb.TypePostgres:
		return []string{
			`CREATE TABLE gorp_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamp with time zone NULL)`,
			`CREATE TABLE subnets (id SERIAL PRIMARY KEY, underlay_ip varchar(15) NOT NULL, overlay_subnet varchar(18) NOT NULL, overlay_hwaddr varchar(17) NOT NULL, last_renewed_at bigint NOT NULL, UNIQUE (underlay_ip), UNIQUE (overlay_subnet), UNIQUE (overlay_hwaddr))`,
		}
	case sqldb.TypeMySQL:
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE subnets (id int NOT NULL AUTO_INCREMENT, underlay_ip varchar(15) NOT NULL, overlay_subnet varchar(18) NOT NULL, overlay_hwaddr varchar(17) NOT NULL, last_renewed_at bigint NOT NULL, PRIMARY KEY (id), UNIQUE (underlay_ip), UNIQUE (overlay_subnet), UNIQUE (overlay_hwaddr))`,
		}
	default: // upstream never ran on sqlite; the same shape stands in for it
		return []string{
			`CREATE TABLE gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
			`CREATE TABLE subnets (id INTEGER PRIMARY KEY AUTOINCREMENT, underlay_ip varchar(15) NOT NULL, overlay_subnet varchar(18) NOT NULL, overlay_hwaddr varchar(17) NOT NULL, last_renewed_at bigint NOT NULL, UNIQUE (underlay_ip), UNIQUE (overlay_subnet), UNIQUE (overlay_hwaddr))`,
		}
	}
}

func TestAdoptsAnUpstreamDatabase(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		db, err := sqldb.Open(ctx, logtest.New(t), dbtest.NewConfig(t, dbType), sqldb.Pool{MaxOpenConnections: 4})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, stmt := range upstreamSchema(dbType) {
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("upstream DDL: %v", err)
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO gorp_migrations (id, applied_at) VALUES ('1', CURRENT_TIMESTAMP)`); err != nil {
			t.Fatal(err)
		}
		existing := lease.Lease{UnderlayIP: "10.0.16.11", OverlaySubnet: "10.255.17.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:11:00"}
		if _, err := db.ExecContext(ctx, `INSERT INTO subnets (underlay_ip, overlay_subnet, overlay_hwaddr, last_renewed_at) VALUES (?, ?, ?, `+db.Dialect().NowUnix+`)`,
			existing.UnderlayIP, existing.OverlaySubnet, existing.OverlayHardwareAddr); err != nil {
			t.Fatal(err)
		}

		applied, err := sqldb.Migrate(ctx, db, Migrations)
		if err != nil || applied != 0 {
			t.Fatalf("migrating an upstream database applied %d, %v; want 0, nil", applied, err)
		}
		pool, _ := lease.NewPool("10.255.0.0/16", 24)
		leaser := NewLeaser(logtest.New(t), NewStore(db), pool, testExpiration)
		routable, err := leaser.Routable(ctx)
		if err != nil || len(routable) != 1 || routable[0] != existing {
			t.Fatalf("routable after adoption = %+v, %v", routable, err)
		}
		if got, err := leaser.Acquire(ctx, existing.UnderlayIP, false); err != nil || got != existing {
			t.Fatalf("the cell's lease after adoption = %+v, %v", got, err)
		}
		if _, err := leaser.Renew(ctx, existing); err != nil {
			t.Fatalf("renew after adoption: %v", err)
		}
		fresh, err := leaser.Acquire(ctx, "10.0.16.12", false)
		if err != nil || fresh.OverlaySubnet == existing.OverlaySubnet {
			t.Fatalf("new cell after adoption = %+v, %v", fresh, err)
		}
	})
}
