package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// oracle is upstream's read query, run directly: what ByGuids must return.
func oracle(t *testing.T, db *sqldb.DB, src, dst []string, and bool) []policy.Policy {
	t.Helper()
	var where []string
	var args []any
	if len(src) > 0 {
		where = append(where, `src.guid IN (`+sqldb.Placeholders(len(src))+`)`)
		for _, g := range src {
			args = append(args, g)
		}
	}
	if len(dst) > 0 {
		where = append(where, `dst.guid IN (`+sqldb.Placeholders(len(dst))+`)`)
		for _, g := range dst {
			args = append(args, g)
		}
	}
	op := " OR "
	if and {
		op = " AND "
	}
	q := `SELECT src.guid, src.id, dst.guid, dst.id, d.port, d.start_port, d.end_port, d.protocol FROM policies
		LEFT OUTER JOIN "groups" src ON policies.group_id = src.id
		LEFT OUTER JOIN destinations d ON d.id = policies.destination_id
		LEFT OUTER JOIN "groups" dst ON d.group_id = dst.id`
	if len(where) > 0 {
		q += " WHERE " + where[0]
		if len(where) == 2 {
			q += op + where[1]
		}
	}
	rows, err := db.QueryContext(context.Background(), q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := []policy.Policy{}
	for rows.Next() {
		var p policy.Policy
		var s, d int
		if err := rows.Scan(&p.Source.ID, &s, &p.Destination.ID, &d, &p.Destination.Port, &p.Destination.Ports.Start, &p.Destination.Ports.End, &p.Destination.Protocol); err != nil {
			t.Fatal(err)
		}
		p.Source.Tag, p.Destination.Tag = policy.FormatTag(s, 2), policy.FormatTag(d, 2)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return sortPolicies(out)
}

func TestReadsMatchUpstreamQueriesThroughWrites(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStore(t, dbType, 2)
		rng := rand.New(rand.NewPCG(1, 2))
		app := func() string { return fmt.Sprintf("app-%d", rng.IntN(30)) }
		apps := func(n int) []string {
			out := make([]string, n)
			for i := range out {
				out[i] = app()
			}
			return out
		}
		var created []policy.Policy
		for round := range 12 {
			var batch []policy.Policy
			for range 15 {
				port := 1000 + rng.IntN(5)
				batch = append(batch, v1(app(), app(), "tcp", port, port+rng.IntN(2)))
			}
			mustCreate(t, s, batch...)
			created = append(created, batch...)
			if round%3 == 2 {
				mustDelete(t, s, created[:len(created)/3]...)
				created = created[len(created)/3:]
			}
			for _, q := range []struct {
				src, dst []string
				and      bool
			}{
				{apps(5), nil, false}, {nil, apps(5), false}, {apps(4), apps(4), false},
				{apps(8), apps(8), true}, {apps(3), nil, true},
			} {
				if len(q.src) > 0 && len(q.dst) == 0 || len(q.dst) > 0 && len(q.src) == 0 {
					q.and = false // a single list has no AND
				}
				got, err := s.ByGuids(ctx, q.src, q.dst, q.and)
				if err != nil {
					t.Fatal(err)
				}
				if diff := gocmp.Diff(oracle(t, s.DB(), q.src, q.dst, q.and), sortPolicies(got)); diff != "" {
					t.Fatalf("round %d ByGuids(%v, %v, %v) (-upstream query +store):\n%s", round, q.src, q.dst, q.and, diff)
				}
			}
			want := oracle(t, s.DB(), nil, nil, false)
			if diff := gocmp.Diff(want, mustAll(t, s)); diff != "" {
				t.Fatalf("round %d All (-upstream query +store):\n%s", round, diff)
			}
			joined, err := s.AllJoinedForTest(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(want, sortPolicies(joined)); diff != "" {
				t.Fatalf("round %d joined load (-upstream query +store):\n%s", round, diff)
			}
		}
	})
}

// Two stores on one database are two policy-server processes: each sees
// the other's writes as soon as they are committed, and a returned slice
// is the caller's to change.
func TestReadsSeeOtherProcessesWrites(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		writer := newStoreWith(t, dbType, 2, nil, 4)
		reader := store.New(writer.DB(), 2, nil)
		if got := mustAll(t, reader); len(got) != 0 {
			t.Fatal(got)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		for range 4 { // readers hammering the reader's cache meanwhile
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := reader.ByGuids(ctx, []string{"a"}, []string{"a"}, false); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		for i := range 20 {
			p := v1("a", fmt.Sprintf("b%d", i), "tcp", 80, 80)
			mustCreate(t, writer, p)
			got, err := reader.ByGuids(ctx, []string{"a"}, []string{"a"}, false)
			if err != nil || len(got) != i+1 {
				t.Fatalf("after write %d the other process sees %d policies (%v)", i, len(got), err)
			}
			got[0].Source.ID = "mutated"
		}
		mustDelete(t, writer, v1("a", "b0", "tcp", 80, 80))
		if got, _ := reader.All(ctx); len(got) != 19 || got[0].Source.ID != "a" {
			t.Errorf("after a delete: %d policies, first %+v", len(got), got[0])
		}
		close(stop)
		wg.Wait()
	})
}
