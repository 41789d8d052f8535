package store_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/testsupport/dbtest"

	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/testsupport/benchlat"
)

// Benchmarks call the store directly (no HTTP) on every dialect and report
// p50/p99/p99.9 latency per operation. Run with:
//   go test -run '^$' -bench . -benchtime 3s ./src/policyserver/store/
// The read benchmarks run against 60,000 policies between 6,000 apps (each
// app the source of 10 policies and the destination of 10).

const ()

func benchStore(b *testing.B, dbType string) *store.Store {
	b.Helper()
	ctx := context.Background()
	db := openDB(b, dbType, 16)
	if _, err := store.Migrate(ctx, db); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := store.PopulateTables(ctx, db, 2); err != nil {
		b.Fatal(err)
	}
	b.Logf("populated 65535 tags in %v", time.Since(start).Round(time.Millisecond))
	return store.New(db, 2, nil)
}

// backgroundWriter creates or deletes one policy every interval until the
// returned stop is called.
func backgroundWriter(b *testing.B, s *store.Store, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		p := v1(storetest.BenchApp(1), storetest.BenchApp(2), "udp", 9999, 9999)
		for i := 0; ; i++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var err error
			if i%2 == 0 {
				err = s.Create(ctx, []policy.Policy{p})
			} else {
				err = s.Delete(ctx, []policy.Policy{p})
			}
			if err != nil && ctx.Err() == nil {
				b.Errorf("background write: %v", err)
				return
			}
		}
	}()
	return func() { cancel(); <-done }
}

// seededStores memoizes one 60k-policy store per dialect for the lifetime
// of the parent benchmark: RunParallel benchmarks run their body more than
// once, and seeding takes seconds.
func seededStores(parent *testing.B) func(*testing.B, string) *store.Store {
	stores := map[string]*store.Store{}
	return func(b *testing.B, dbType string) *store.Store {
		if s, ok := stores[dbType]; ok {
			return s
		}
		s := benchStore(parent, dbType)
		storetest.SeedBenchPolicies(parent, s)
		stores[dbType] = s
		return s
	}
}

// BenchmarkCreate creates 100 new policies per op among 1,000 apps.
func BenchmarkCreate(b *testing.B) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := benchStore(b, d)
			ctx := context.Background()
			var lat benchlat.Latencies
			i := 0
			start := time.Now()
			for b.Loop() {
				ps := make([]policy.Policy, 100)
				for j := range ps {
					n := i*100 + j
					ps[j] = v1(storetest.BenchApp(n%1000), storetest.BenchApp((n/1000+n+1)%1000), "tcp", 1+i%60000, 1+i%60000)
				}
				t0 := time.Now()
				if err := s.Create(ctx, ps); err != nil {
					b.Fatal(err)
				}
				lat.Add(time.Since(t0))
				i++
			}
			b.ReportMetric(float64(100*i)/time.Since(start).Seconds(), "policies/s")
			lat.Report(b)
		})
	}
}

func benchByGuids(b *testing.B, writeEvery time.Duration) {
	seeded := seededStores(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := seeded(b, d)
			if writeEvery > 0 {
				defer backgroundWriter(b, s, writeEvery)()
			}
			var lat benchlat.Latencies
			var rows atomic.Int64
			var seed atomic.Uint64
			b.SetParallelism(2) // 4 clients on 2 CPUs
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(seed.Add(1), 1))
				ids := make([]string, 250)
				for pb.Next() {
					for j := range ids {
						ids[j] = storetest.BenchApp(rng.IntN(storetest.BenchApps))
					}
					t0 := time.Now()
					got, err := s.ByGuids(ctx, ids, ids, false)
					if err != nil {
						b.Error(err)
						return
					}
					lat.Add(time.Since(t0))
					rows.Add(int64(len(got)))
				}
			})
			b.ReportMetric(float64(rows.Load())/float64(b.N), "policies/op")
			lat.Report(b)
		})
	}
}

// BenchmarkByGuids250 asks, as a cell's policy agent does, for the policies
// of 250 apps (source or destination) at 60,000 policies, from 4 clients,
// with no writes going on (the steady state between policy changes).
func BenchmarkByGuids250(b *testing.B) { benchByGuids(b, 0) }

// BenchmarkByGuids250Writes is the same with a policy write every second,
// each of which makes the next read reload the snapshot.
func BenchmarkByGuids250Writes(b *testing.B) { benchByGuids(b, time.Second) }

// BenchmarkAll lists all 60,000 policies from the warm snapshot.
func BenchmarkAll(b *testing.B) {
	seeded := seededStores(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := seeded(b, d)
			ctx := context.Background()
			var lat benchlat.Latencies
			for b.Loop() {
				t0 := time.Now()
				got, err := s.All(ctx)
				if err != nil {
					b.Fatal(err)
				}
				lat.Add(time.Since(t0))
				if len(got) < storetest.BenchPolicies {
					b.Fatalf("All returned %d policies", len(got))
				}
			}
			lat.Report(b)
		})
	}
}

// BenchmarkReloadAfterWrite is what the first reader after a write pays:
// one policy write (untimed), then All, which reloads all 60,000 policies
// from the database (upstream's query, every time).
func BenchmarkReloadAfterWrite(b *testing.B) {
	seeded := seededStores(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := seeded(b, d)
			ctx := context.Background()
			p := v1(storetest.BenchApp(1), storetest.BenchApp(2), "udp", 9999, 9999)
			var lat benchlat.Latencies
			i := 0
			for b.Loop() {
				b.StopTimer()
				var err error
				if i%2 == 0 {
					err = s.Create(ctx, []policy.Policy{p})
				} else {
					err = s.Delete(ctx, []policy.Policy{p})
				}
				if err != nil {
					b.Fatal(err)
				}
				i++
				b.StartTimer()
				t0 := time.Now()
				if _, err := s.All(ctx); err != nil {
					b.Fatal(err)
				}
				lat.Add(time.Since(t0))
			}
			lat.Report(b)
		})
	}
}

// BenchmarkLastUpdated is the poll every agent makes every few seconds,
// from 4 clients at once (far more than 200 req/s), at 60,000 policies with
// a write every second.
func BenchmarkLastUpdated(b *testing.B) {
	seeded := seededStores(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := seeded(b, d)
			defer backgroundWriter(b, s, time.Second)()
			var lat benchlat.Latencies
			b.SetParallelism(2)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					t0 := time.Now()
					if _, err := s.LastUpdated(ctx); err != nil {
						b.Error(err)
						return
					}
					lat.Add(time.Since(t0))
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
			lat.Report(b)
		})
	}
}
