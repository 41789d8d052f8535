package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// Fifty clients create and delete policies between a small shared set of
// apps, so every write contends for the same tags, destinations and rows.
// Each client owns a disjoint set of policies (its own port) and deletes
// only its own, so the final state is the union of fifty sequential models.
func TestConcurrentWritersAgreeWithASequentialModel(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		s := newStoreWith(t, dbType, 2, nil, 10)
		const clients, apps, rounds = 50, 12, 6
		app := func(i int) string { return fmt.Sprintf("app-%02d", i) }

		var wg sync.WaitGroup
		models := make([]map[policy.Policy]bool, clients)
		routerTags := make([]policy.Tag, clients)
		errs := make(chan error, clients)
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(c), 7))
				model := map[policy.Policy]bool{}
				mine := func() policy.Policy {
					// Port 1000+c makes the policy this client's alone.
					return v1(app(rng.IntN(apps)), app(rng.IntN(apps)), []string{"tcp", "udp"}[rng.IntN(2)], 1000+c, 1000+c+rng.IntN(2))
				}
				for r := range rounds {
					var batch []policy.Policy
					for range 1 + rng.IntN(5) {
						batch = append(batch, mine())
					}
					if err := s.Create(ctx, batch); err != nil {
						errs <- fmt.Errorf("client %d create: %w", c, err)
						return
					}
					for _, p := range batch {
						model[p] = true
					}
					var del []policy.Policy
					for p := range model {
						if rng.IntN(2) == 0 {
							del = append(del, p)
						}
					}
					if r%2 == 1 {
						del = append(del, mine()) // maybe absent: a no-op
					}
					if err := s.Delete(ctx, del); err != nil {
						errs <- fmt.Errorf("client %d delete: %w", c, err)
						return
					}
					for _, p := range del {
						delete(model, p)
					}
				}
				tag, err := s.CreateTag(ctx, "router", "router")
				if err != nil {
					errs <- fmt.Errorf("client %d create tag: %w", c, err)
					return
				}
				routerTags[c] = tag
				models[c] = model
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}

		var want []policy.Policy
		for _, m := range models {
			for p := range m {
				want = append(want, p)
			}
		}
		got := mustAll(t, s)
		tagOf := map[string]string{}
		var untagged []policy.Policy
		for _, p := range got {
			for _, e := range [][2]string{{p.Source.ID, p.Source.Tag}, {p.Destination.ID, p.Destination.Tag}} {
				if prev, ok := tagOf[e[0]]; ok && prev != e[1] {
					t.Errorf("app %s has tags %s and %s", e[0], prev, e[1])
				}
				tagOf[e[0]] = e[1]
			}
			p.Source.Tag, p.Destination.Tag = "", ""
			untagged = append(untagged, p)
		}
		if diff := gocmp.Diff(sortPolicies(want), untagged); diff != "" {
			t.Errorf("policies differ from the sequential model (-want +got):\n%s", diff)
		}

		// Exactly the apps in policies, plus the router, hold tags; each
		// one tag, no tag twice.
		tags, err := s.Tags(ctx)
		if err != nil {
			t.Fatal(err)
		}
		byTag := map[string]string{}
		for _, tg := range tags {
			if other, ok := byTag[tg.Tag]; ok {
				t.Errorf("tag %s held by %s and %s", tg.Tag, other, tg.ID)
			}
			byTag[tg.Tag] = tg.ID
			if tg.ID == "router" {
				continue
			}
			if tagOf[tg.ID] != tg.Tag {
				t.Errorf("tag list says %s=%s, policies say %q", tg.ID, tg.Tag, tagOf[tg.ID])
			}
		}
		if len(tags) != len(tagOf)+1 {
			t.Errorf("%d tags for %d apps in policies plus the router", len(tags), len(tagOf))
		}
		for c, tg := range routerTags {
			if tg != routerTags[0] {
				t.Errorf("client %d got router tag %+v, client 0 got %+v", c, tg, routerTags[0])
			}
		}

		// No orphaned or duplicated rows behind the policies.
		var destinations, distinct, orphans int
		db := s.DB()
		_ = db.GetContext(ctx, &destinations, `SELECT COUNT(*) FROM destinations`)
		_ = db.GetContext(ctx, &distinct, `SELECT COUNT(*) FROM (SELECT DISTINCT group_id, start_port, end_port, protocol FROM destinations) t`)
		_ = db.GetContext(ctx, &orphans, `SELECT COUNT(*) FROM destinations WHERE NOT EXISTS (SELECT 1 FROM policies WHERE policies.destination_id = destinations.id)`)
		if destinations != distinct || orphans != 0 {
			t.Errorf("destinations: %d rows, %d distinct, %d unused", destinations, distinct, orphans)
		}
	})
}
