package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

const testExpiration = 3600

type fixture struct {
	db     *sqldb.DB
	store  *Store
	leaser *Leaser
}

func newFixture(t testing.TB, dbType string, network string, prefix int) *fixture {
	t.Helper()
	c := dbtest.NewConfig(t, dbType)
	ctx := context.Background()
	db, err := sqldb.Open(ctx, logtest.New(t), c, sqldb.Pool{MaxOpenConnections: 20, MaxIdleConnections: 20})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := sqldb.Migrate(ctx, db, Migrations); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	pool, err := lease.NewPool(network, prefix)
	if err != nil {
		t.Fatal(err)
	}
	store := NewStore(db)
	return &fixture{db: db, store: store, leaser: NewLeaser(logtest.New(t), store, pool, testExpiration)}
}

// age moves a lease's renewal time into the past by seconds.
func (f *fixture) age(t testing.TB, underlayIP string, seconds int) {
	t.Helper()
	if _, err := f.db.ExecContext(context.Background(), `UPDATE subnets SET last_renewed_at = last_renewed_at - ? WHERE underlay_ip = ?`, seconds, underlayIP); err != nil {
		t.Fatal(err)
	}
}

func underlay(i int) string { return fmt.Sprintf("10.0.%d.%d", i/250, i%250+1) }

func TestLeaserOnEveryDialect(t *testing.T) {
	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()

		t.Run("acquire allocates a block lease with the derived hardware address", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			got, err := f.leaser.Acquire(ctx, "10.0.0.5", false)
			if err != nil {
				t.Fatal(err)
			}
			hw, _ := lease.HardwareAddr(got.OverlaySubnet)
			if got.UnderlayIP != "10.0.0.5" || got.OverlayHardwareAddr != hw || !f.leaser.pool.IsMember(got.OverlaySubnet) || lease.IsSingle(got.OverlaySubnet) {
				t.Fatalf("lease %+v", got)
			}
			again, err := f.leaser.Acquire(ctx, "10.0.0.5", true)
			if err != nil || again != got {
				t.Fatalf("second acquire = %+v, %v; want the same lease %+v", again, err, got)
			}
		})

		t.Run("single-ip leases come from the first subnet", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			got, err := f.leaser.Acquire(ctx, "10.0.0.6", true)
			if err != nil || !lease.IsSingle(got.OverlaySubnet) || !f.leaser.pool.IsMember(got.OverlaySubnet) {
				t.Fatalf("single acquire = %+v, %v", got, err)
			}
		})

		t.Run("invalid underlay ip is refused", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			for _, ip := range []string{"", "banana", "::1", "10.0.0.256"} {
				if _, err := f.leaser.Acquire(ctx, ip, false); !isInvalid(err) {
					t.Errorf("Acquire(%q) = %v, want an InvalidError", ip, err)
				}
			}
		})

		t.Run("pool exhaustion, expired-lease reuse, and no lease available", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/29", 30) // 1 block lease (10.255.0.4/30), 3 singles
			first, err := f.leaser.Acquire(ctx, "10.0.0.1", false)
			if err != nil || first.OverlaySubnet != "10.255.0.4/30" {
				t.Fatalf("first = %+v, %v", first, err)
			}
			if _, err := f.leaser.Acquire(ctx, "10.0.0.2", false); !errors.Is(err, ErrNoLeaseAvailable) {
				t.Fatalf("full pool = %v, want ErrNoLeaseAvailable", err)
			}
			f.age(t, "10.0.0.1", testExpiration+1)
			routable, _ := f.leaser.Routable(ctx)
			if len(routable) != 0 {
				t.Fatalf("expired lease still routable: %+v", routable)
			}
			second, err := f.leaser.Acquire(ctx, "10.0.0.2", false)
			if err != nil || second.OverlaySubnet != first.OverlaySubnet {
				t.Fatalf("reuse = %+v, %v; want %s", second, err, first.OverlaySubnet)
			}
			if _, found, _ := f.store.ByUnderlayIP(ctx, "10.0.0.1"); found {
				t.Fatal("expired lease not removed when reused")
			}
		})

		t.Run("expired leases are not reused while the pool has free subnets", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/28", 30) // 3 blocks
			a, _ := f.leaser.Acquire(ctx, "10.0.0.1", false)
			f.age(t, "10.0.0.1", testExpiration+1)
			for i := 2; i <= 3; i++ {
				got, err := f.leaser.Acquire(ctx, underlay(i), false)
				if err != nil || got.OverlaySubnet == a.OverlaySubnet {
					t.Fatalf("acquire %d = %+v, %v (expired %s reused early)", i, got, err, a.OverlaySubnet)
				}
			}
		})

		t.Run("a held lease that expired is refreshed when its cell acquires again", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			a, _ := f.leaser.Acquire(ctx, "10.0.0.1", false)
			f.age(t, "10.0.0.1", testExpiration+1)
			again, err := f.leaser.Acquire(ctx, "10.0.0.1", false)
			if err != nil || again != a {
				t.Fatalf("re-acquire = %+v, %v", again, err)
			}
			routable, _ := f.leaser.Routable(ctx)
			if diff := cmp.Diff([]lease.Lease{a}, routable); diff != "" {
				t.Fatalf("routable (-want +got):\n%s", diff)
			}
		})

		t.Run("a lease outside a changed pool is replaced", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			stale := lease.Lease{UnderlayIP: "10.0.0.1", OverlaySubnet: "10.254.3.0/24", OverlayHardwareAddr: "ee:ee:0a:fe:03:00"}
			if err := f.store.Insert(ctx, stale); err != nil {
				t.Fatal(err)
			}
			got, err := f.leaser.Acquire(ctx, "10.0.0.1", false)
			if err != nil || got == stale || !f.leaser.pool.IsMember(got.OverlaySubnet) {
				t.Fatalf("acquire = %+v, %v", got, err)
			}
		})

		t.Run("renew", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			a, _ := f.leaser.Acquire(ctx, "10.0.0.1", false)
			f.age(t, "10.0.0.1", testExpiration+1)
			if _, err := f.leaser.Renew(ctx, a); err != nil {
				t.Fatalf("renew: %v", err)
			}
			if _, err := f.leaser.Renew(ctx, a); err != nil {
				t.Fatalf("renew twice in one second: %v", err)
			}
			if routable, _ := f.leaser.Routable(ctx); len(routable) != 1 {
				t.Fatalf("renewed lease not routable: %+v", routable)
			}
			wrong := a
			wrong.OverlaySubnet = "10.255.200.0/24"
			wrong.OverlayHardwareAddr = "ee:ee:0a:ff:c8:00"
			if a.OverlaySubnet == wrong.OverlaySubnet { // the acquired subnet is random
				wrong.OverlaySubnet = "10.255.201.0/24"
				wrong.OverlayHardwareAddr = "ee:ee:0a:ff:c9:00"
			}
			if _, err := f.leaser.Renew(ctx, wrong); !errors.Is(err, ErrLeaseMismatch) {
				t.Fatalf("renew with wrong subnet = %v, want ErrLeaseMismatch", err)
			}
			wrongHW := a
			wrongHW.OverlayHardwareAddr = "ee:ee:00:00:00:00"
			if _, err := f.leaser.Renew(ctx, wrongHW); !errors.Is(err, ErrLeaseMismatch) {
				t.Fatalf("renew with wrong hwaddr = %v, want ErrLeaseMismatch", err)
			}
			if _, err := f.leaser.Renew(ctx, lease.Lease{UnderlayIP: "x"}); !isInvalid(err) {
				t.Fatalf("renew garbage = %v, want an InvalidError", err)
			}
		})

		t.Run("renew adopts an unknown lease unless it collides", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			known := lease.Lease{UnderlayIP: "10.0.0.9", OverlaySubnet: "10.255.9.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:09:00"}
			if _, err := f.leaser.Renew(ctx, known); err != nil {
				t.Fatalf("adopt: %v", err)
			}
			got, found, _ := f.store.ByUnderlayIP(ctx, "10.0.0.9")
			if !found || got != known {
				t.Fatalf("adopted = %+v %v", got, found)
			}
			thief := lease.Lease{UnderlayIP: "10.0.0.10", OverlaySubnet: known.OverlaySubnet, OverlayHardwareAddr: known.OverlayHardwareAddr}
			_, err := f.leaser.Renew(ctx, thief)
			if !errors.As(err, new(*adoptError)) || !errors.Is(err, sqldb.ErrConflict) {
				t.Fatalf("colliding adopt = %v", err)
			}
		})

		t.Run("release is idempotent and frees the subnet", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/29", 30)
			a, _ := f.leaser.Acquire(ctx, "10.0.0.1", false)
			for i := 0; i < 2; i++ {
				if err := f.leaser.Release(ctx, "10.0.0.1"); err != nil {
					t.Fatalf("release %d: %v", i, err)
				}
			}
			b, err := f.leaser.Acquire(ctx, "10.0.0.2", false)
			if err != nil || b.OverlaySubnet != a.OverlaySubnet {
				t.Fatalf("acquire after release = %+v, %v", b, err)
			}
		})

		t.Run("counts", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			f.leaser.Acquire(ctx, "10.0.0.1", false)
			f.leaser.Acquire(ctx, "10.0.0.2", false)
			f.leaser.Acquire(ctx, "10.0.0.3", true)
			f.age(t, "10.0.0.2", 7200)
			got, err := f.store.Count(ctx, 3600)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(Counts{Total: 3, Blocks: 2, Fresh: 2}, got); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
		})

		t.Run("two controllers on one database never share a subnet", func(t *testing.T) {
			f := newFixture(t, dbType, "10.255.0.0/16", 24)
			other := NewLeaser(logtest.New(t), f.store, f.leaser.pool, testExpiration)
			var wg sync.WaitGroup
			results := make([]lease.Lease, 100)
			errs := make([]error, 100)
			for i := range results {
				wg.Add(1)
				go func() {
					defer wg.Done()
					l := f.leaser
					if i%2 == 1 {
						l = other
					}
					results[i], errs[i] = l.Acquire(ctx, underlay(i), false)
				}()
			}
			wg.Wait()
			seen := map[string]bool{}
			for i, r := range results {
				if errs[i] != nil {
					t.Fatalf("acquire %d: %v", i, errs[i])
				}
				if seen[r.OverlaySubnet] {
					t.Fatalf("subnet %s leased twice", r.OverlaySubnet)
				}
				seen[r.OverlaySubnet] = true
			}
		})
	})
}

// Upstream's lease lines: info on acquire, re-acquire and release, debug on
// renewal and on releasing nothing.
func TestLeaserLogLines(t *testing.T) {
	f := newFixture(t, sqldb.TypeSQLite, "10.255.0.0/16", 24)
	logger, capture := logtest.NewCapture(t, "cfnetworking.silk-controller")
	f.leaser.logger = logger
	ctx := context.Background()
	got, err := f.leaser.Acquire(ctx, "10.0.0.5", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.leaser.Acquire(ctx, "10.0.0.5", false); err != nil {
		t.Fatal(err)
	}
	if _, err := f.leaser.Renew(ctx, got); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := f.leaser.Release(ctx, "10.0.0.5"); err != nil {
			t.Fatal(err)
		}
	}
	l := map[string]any{"underlay_ip": got.UnderlayIP, "overlay_subnet": got.OverlaySubnet, "overlay_hardware_addr": got.OverlayHardwareAddr}
	want := []logtest.Line{
		{Message: "cfnetworking.silk-controller.lease-acquired", Level: "info", Data: map[string]any{"lease": l}},
		{Message: "cfnetworking.silk-controller.lease-renewed", Level: "info", Data: map[string]any{"lease": l}},
		{Message: "cfnetworking.silk-controller.lease-renewed", Level: "debug", Data: map[string]any{"lease": l}},
		{Message: "cfnetworking.silk-controller.lease-released", Level: "info", Data: map[string]any{"underlay_ip": "10.0.0.5"}},
		{Message: "cfnetworking.silk-controller.lease-not-found", Level: "debug", Data: map[string]any{"underlay_ip": "10.0.0.5"}},
	}
	if diff := cmp.Diff(want, capture.Lines()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}
