package store_test

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

func sortPolicies(ps []policy.Policy) []policy.Policy {
	out := slices.Clone(ps)
	slices.SortFunc(out, func(a, b policy.Policy) int {
		return cmp.Or(cmp.Compare(a.Source.ID, b.Source.ID), cmp.Compare(a.Destination.ID, b.Destination.ID),
			cmp.Compare(a.Destination.Protocol, b.Destination.Protocol), cmp.Compare(a.Destination.Ports.Start, b.Destination.Ports.Start),
			cmp.Compare(a.Destination.Ports.End, b.Destination.Ports.End))
	})
	return out
}

func withTags(p policy.Policy, src, dst string) policy.Policy {
	p.Source.Tag, p.Destination.Tag = src, dst
	return p
}

func mustCreate(t *testing.T, s *store.Store, ps ...policy.Policy) {
	t.Helper()
	if err := s.Create(context.Background(), ps); err != nil {
		t.Fatalf("create: %v", err)
	}
}

func mustDelete(t *testing.T, s *store.Store, ps ...policy.Policy) {
	t.Helper()
	if err := s.Delete(context.Background(), ps); err != nil {
		t.Fatalf("delete: %v", err)
	}
}

func mustAll(t *testing.T, s *store.Store) []policy.Policy {
	t.Helper()
	all, err := s.All(context.Background())
	if err != nil {
		t.Fatalf("all: %v", err)
	}
	return sortPolicies(all)
}

func TestPopulateTablesFillsThePoolOnce(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		db := openDB(t, dbType, 4)
		if _, err := store.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if err := store.PopulateTables(ctx, db, 2); err != nil {
				t.Fatalf("populate: %v", err)
			}
		}
		var n, lo, hi, typed int
		if err := db.GetContext(ctx, &n, `SELECT COUNT(*) FROM "groups" WHERE guid IS NULL`); err != nil || n != 65535 {
			t.Fatalf("free groups = %d, %v; want 65535", n, err)
		}
		_ = db.GetContext(ctx, &lo, `SELECT MIN(id) FROM "groups"`)
		_ = db.GetContext(ctx, &hi, `SELECT MAX(id) FROM "groups"`)
		_ = db.GetContext(ctx, &typed, `SELECT COUNT(*) FROM "groups" WHERE type = 'app'`)
		if lo != 1 || hi != 65535 || typed != 65535 {
			t.Errorf("pool ids %d..%d, %d typed app; want 1..65535 all app (upstream's column default)", lo, hi, typed)
		}
		if err := store.PopulateTables(ctx, db, 4); err == nil {
			t.Error("tag length 4 accepted")
		}
	})
}

func TestCreateReadDelete(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)

		if got := mustAll(t, s); len(got) != 0 {
			t.Fatalf("empty store lists %v", got)
		}
		a := v1("app-a", "app-b", "tcp", 8080, 8080)
		b := v1("app-a", "app-c", "udp", 5000, 6000)
		c := v0("app-c", "app-b", "tcp", 70000) // v0 has no upper bound
		mustCreate(t, s, a, b, c)
		mustCreate(t, s, a, b) // idempotent

		want := sortPolicies([]policy.Policy{
			withTags(a, "0001", "0002"),
			withTags(b, "0001", "0003"),
			withTags(c, "0003", "0002"),
		})
		if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
			t.Fatalf("all (-want +got):\n%s", diff)
		}

		// Port columns as upstream maps v0 and v1 bodies.
		type row struct{ Port, Start, End int }
		var rows []row
		if err := s.DB().SelectContext(ctx, &rows, `SELECT port AS "port", start_port AS "start", end_port AS "end" FROM destinations ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		// sqlx maps lower-cased column names; struct fields need db tags.
		var raw []struct {
			Port  int `db:"port"`
			Start int `db:"start_port"`
			End   int `db:"end_port"`
		}
		if err := s.DB().SelectContext(ctx, &raw, `SELECT port, start_port, end_port FROM destinations ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		wantRaw := []struct {
			Port  int `db:"port"`
			Start int `db:"start_port"`
			End   int `db:"end_port"`
		}{{8080, 8080, 8080}, {0, 5000, 6000}, {70000, 70000, 70000}}
		if diff := gocmp.Diff(wantRaw, raw); diff != "" {
			t.Errorf("destination ports (-want +got):\n%s", diff)
		}
		_ = rows

		var policies int
		_ = s.DB().GetContext(ctx, &policies, `SELECT COUNT(*) FROM policies`)
		if policies != 3 {
			t.Errorf("policies rows = %d after an idempotent create, want 3", policies)
		}

		mustDelete(t, s, a, v1("nope", "app-b", "tcp", 1, 1), v1("app-a", "app-b", "tcp", 9, 9))
		want = sortPolicies([]policy.Policy{withTags(b, "0001", "0003"), withTags(c, "0003", "0002")})
		if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
			t.Fatalf("after delete (-want +got):\n%s", diff)
		}
		// app-b is still a destination of c, so it keeps its tag.
		mustDelete(t, s, b, c)
		if got := mustAll(t, s); len(got) != 0 {
			t.Fatalf("after deleting everything: %v", got)
		}
		var left, assigned int
		_ = s.DB().GetContext(ctx, &left, `SELECT COUNT(*) FROM destinations`)
		_ = s.DB().GetContext(ctx, &assigned, `SELECT COUNT(*) FROM "groups" WHERE guid IS NOT NULL`)
		if left != 0 || assigned != 0 {
			t.Errorf("after deleting everything: %d destinations, %d assigned groups; want 0, 0", left, assigned)
		}
		if err := s.Create(ctx, nil); err != nil {
			t.Errorf("empty create: %v", err)
		}
		if err := s.Delete(ctx, nil); err != nil {
			t.Errorf("empty delete: %v", err)
		}
	})
}

func TestOverlappingRangesAreDistinctDestinations(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		s := newStore(t, dbType, 2)
		ps := []policy.Policy{
			v1("a", "b", "tcp", 1000, 2000),
			v1("a", "b", "tcp", 1500, 2500),
			v1("a", "b", "tcp", 1500, 1500),
			v1("a", "b", "udp", 1000, 2000),
		}
		mustCreate(t, s, ps...)
		if got := mustAll(t, s); len(got) != 4 {
			t.Fatalf("got %d policies, want 4: %v", len(got), got)
		}
		mustDelete(t, s, ps[1])
		want := sortPolicies([]policy.Policy{withTags(ps[0], "0001", "0002"), withTags(ps[2], "0001", "0002"), withTags(ps[3], "0001", "0002")})
		if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
			t.Errorf("after deleting one range (-want +got):\n%s", diff)
		}
	})
}

func TestByGuids(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)
		ab := v1("a", "b", "tcp", 80, 80)
		ba := v1("b", "a", "tcp", 80, 80)
		bc := v1("b", "c", "tcp", 80, 80)
		cd := v1("c", "d", "udp", 53, 53)
		aa := v1("a", "a", "tcp", 81, 81)
		mustCreate(t, s, ab, ba, bc, cd, aa)
		ids := func(ps []policy.Policy) []string {
			var out []string
			for _, p := range sortPolicies(ps) {
				out = append(out, p.Source.ID+">"+p.Destination.ID)
			}
			return out
		}
		for _, tc := range []struct {
			name     string
			src, dst []string
			and      bool
			want     []string
		}{
			{"id list (or)", []string{"a"}, []string{"a"}, false, []string{"a>a", "a>b", "b>a"}},
			{"or of two lists", []string{"c"}, []string{"b"}, false, []string{"a>b", "c>d"}},
			{"and", []string{"a", "b"}, []string{"b", "c"}, true, []string{"a>b", "b>c"}},
			{"only source", []string{"b"}, nil, false, []string{"b>a", "b>c"}},
			{"only destination", nil, []string{"d", "a"}, false, []string{"a>a", "b>a", "c>d"}},
			{"only destination with and", nil, []string{"d"}, true, []string{"c>d"}},
			{"nothing", nil, nil, false, nil},
			{"empty id matches nothing", []string{""}, []string{""}, false, nil},
			{"unknown", []string{"zz"}, []string{"zz"}, false, nil},
		} {
			got, err := s.ByGuids(ctx, tc.src, tc.dst, tc.and)
			if err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if got == nil {
				t.Errorf("%s: nil slice, want empty", tc.name)
			}
			if diff := gocmp.Diff(tc.want, ids(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.name, diff)
			}
		}
		got, _ := s.ByGuids(ctx, []string{"c"}, []string{"c"}, false)
		want := sortPolicies([]policy.Policy{withTags(bc, "0002", "0003"), withTags(cd, "0003", "0004")})
		if diff := gocmp.Diff(want, sortPolicies(got)); diff != "" {
			t.Errorf("tags in ByGuids (-want +got):\n%s", diff)
		}
	})
}

func TestTags(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)

		mustCreate(t, s, v1("A", "B", "tcp", 80, 80))
		tags, err := s.Tags(ctx)
		wantTags := []policy.Tag{{ID: "A", Tag: "0001", Type: "app"}, {ID: "B", Tag: "0002", Type: "app"}}
		if err != nil || !gocmp.Equal(wantTags, tags) {
			t.Fatalf("tags = %v, %v; want %v", tags, err, wantTags)
		}

		// A freed tag is the next one handed out.
		mustDelete(t, s, v1("A", "B", "tcp", 80, 80))
		mustCreate(t, s, v1("A", "C", "tcp", 80, 80))
		tags, _ = s.Tags(ctx)
		wantTags = []policy.Tag{{ID: "A", Tag: "0001", Type: "app"}, {ID: "C", Tag: "0002", Type: "app"}}
		if !gocmp.Equal(wantTags, tags) {
			t.Fatalf("after reuse tags = %v; want %v", tags, wantTags)
		}

		// Create-or-get: stable, lowest free, any type.
		router, err := s.CreateTag(ctx, "INGRESS_ROUTER", "router")
		if err != nil || router != (policy.Tag{ID: "INGRESS_ROUTER", Tag: "0003", Type: "router"}) {
			t.Fatalf("CreateTag = %+v, %v", router, err)
		}
		again, err := s.CreateTag(ctx, "INGRESS_ROUTER", "router")
		if err != nil || again != router {
			t.Fatalf("CreateTag again = %+v, %v; want %+v", again, err, router)
		}
		existing, err := s.CreateTag(ctx, "A", "app")
		if err != nil || existing.Tag != "0001" {
			t.Fatalf("CreateTag for a policy app = %+v, %v; want its tag 0001", existing, err)
		}

		// Same id, different type: a conflict, from either side.
		if _, err := s.CreateTag(ctx, "INGRESS_ROUTER", "app"); !errors.Is(err, sqldb.ErrConflict) {
			t.Errorf("CreateTag with another type: %v, want ErrConflict", err)
		}
		err = s.Create(ctx, []policy.Policy{v1("A", "INGRESS_ROUTER", "tcp", 80, 80)})
		if !errors.Is(err, sqldb.ErrConflict) {
			t.Errorf("policy naming a router id: %v, want ErrConflict", err)
		}
		if got := mustAll(t, s); len(got) != 1 {
			t.Errorf("a failed create left %d policies, want 1", len(got))
		}

		// PUT-created tags survive policy churn that does not name them.
		mustCreate(t, s, v1("D", "E", "tcp", 80, 80))
		mustDelete(t, s, v1("D", "E", "tcp", 80, 80), v1("A", "C", "tcp", 80, 80))
		tags, _ = s.Tags(ctx)
		if !gocmp.Equal([]policy.Tag{router}, tags) {
			t.Errorf("after deleting every policy tags = %v; want only %v", tags, router)
		}
	})
}

func TestTagExhaustion(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 1)
		var ps []policy.Policy
		for i := range 127 { // 254 apps
			ps = append(ps, v1(fmt.Sprintf("s%d", i), fmt.Sprintf("d%d", i), "tcp", 80, 80))
		}
		mustCreate(t, s, ps...)
		last, err := s.CreateTag(ctx, "last", "app")
		if err != nil || last.Tag != "FF" {
			t.Fatalf("255th tag = %+v, %v; want FF", last, err)
		}
		_, err = s.CreateTag(ctx, "one-too-many", "app")
		if !errors.Is(err, sql.ErrNoRows) {
			t.Errorf("CreateTag on a full pool: %v, want sql.ErrNoRows", err)
		}
		err = s.Create(ctx, []policy.Policy{v1("s0", "new", "tcp", 80, 80)})
		if !errors.Is(err, sql.ErrNoRows) || err.Error() != "creating group: failed to find available tag: sql: no rows in result set" {
			t.Errorf("create on a full pool: %v", err)
		}
		// Apps that already have tags still get policies.
		mustCreate(t, s, v1("s0", "d1", "tcp", 80, 80))
	})
}

func TestLastUpdatedChangesOnEveryWrite(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)
		prev, err := s.LastUpdated(ctx)
		if err != nil || prev <= 0 {
			t.Fatalf("initial LastUpdated = %d, %v", prev, err)
		}
		p := v1("a", "b", "tcp", 80, 80)
		writes := []func() error{
			func() error { return s.Create(ctx, []policy.Policy{p}) },
			func() error { return s.Create(ctx, []policy.Policy{p}) }, // no-op create
			func() error { return s.Delete(ctx, []policy.Policy{p}) },
			func() error { return s.Delete(ctx, []policy.Policy{p}) }, // no-op delete
			func() error { return s.Create(ctx, []policy.Policy{p}) },
		}
		for i, w := range writes {
			if err := w(); err != nil {
				t.Fatal(err)
			}
			cur, err := s.LastUpdated(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if cur == prev {
				t.Errorf("write %d left LastUpdated at %d", i, cur)
			}
			if cur%1000 != 0 {
				t.Errorf("LastUpdated %d is not whole microseconds", cur)
			}
			prev = cur
		}
		if _, err := s.CreateTag(ctx, "x", "router"); err != nil {
			t.Fatal(err)
		}
		if cur, _ := s.LastUpdated(ctx); cur != prev {
			t.Errorf("CreateTag changed LastUpdated (upstream does not)")
		}
	})
}

func TestCheckDatabaseAndMetrics(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		m := newFakeMetrics()
		s := newStoreWith(t, dbType, 2, m, 4)
		if err := s.CheckDatabase(ctx); err != nil {
			t.Fatal(err)
		}
		mustCreate(t, s, v1("a", "b", "tcp", 80, 80))
		_, _ = s.All(ctx)
		_, _ = s.ByGuids(ctx, []string{"a"}, []string{"a"}, false)
		_, _ = s.Tags(ctx)
		_, _ = s.CreateTag(ctx, "r", "router")
		_, _ = s.LastUpdated(ctx)
		mustDelete(t, s, v1("a", "b", "tcp", 80, 80))
		_, _, _ = s.SecurityGroupsBySpaceGuids(ctx, nil, store.Page{})
		_ = s.ReplaceSecurityGroups(ctx, nil)
		_, _ = s.CreateTag(ctx, "r", "app") // conflict
		for _, name := range []string{"StoreCreate", "StoreAll", "StoreDelete", "StoreLastUpdated", "StoreTags", "StoreCreateTag",
			"StoreByGuids", "StoreCheckDatabase", "SecurityGroupsStoreReplace", "SecurityGroupsStoreBySpaceGuids"} {
			if m.durations[name+"SuccessTime"] == 0 {
				t.Errorf("no %sSuccessTime", name)
			}
		}
		if m.counters["StoreCreateTagError"] != 1 || m.durations["StoreCreateTagErrorTime"] != 1 {
			t.Errorf("failed CreateTag metrics: counters %v durations %v", m.counters, m.durations)
		}
		_ = s.DB().Close()
		if err := s.CheckDatabase(ctx); err == nil {
			t.Error("CheckDatabase on a closed pool succeeded")
		}
	})
}

func TestPopulateTablesRacingItself(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		db := openDB(t, dbType, 8)
		if _, err := store.Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 4)
		for range 4 {
			go func() { errs <- store.PopulateTables(ctx, db, 1) }()
		}
		for range 4 {
			if err := <-errs; err != nil {
				t.Errorf("populate: %v", err)
			}
		}
		var n, hi int
		_ = db.GetContext(ctx, &n, `SELECT COUNT(*) FROM "groups"`)
		_ = db.GetContext(ctx, &hi, `SELECT MAX(id) FROM "groups"`)
		if n != 255 || hi != 255 {
			t.Errorf("%d groups up to id %d, want 255", n, hi)
		}
	})
}
