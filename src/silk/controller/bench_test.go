package controller

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/testsupport/dbtest"

	"github.com/netman-release/netman/src/testsupport/benchlat"
)

// Benchmarks drive the API handler in-process (JSON, routing, SQL) so they
// measure the controller, not TLS handshakes. Each reports p50/p99 latency.
// Run with: make bench, or
//   go test -run '^$' -bench . -benchtime 2000x ./src/silk/controller/

func benchAPI(b *testing.B, dbType, network string, prefix int, indexTTL time.Duration) (*fixture, http.Handler) {
	f := newFixture(b, dbType, network, prefix)
	// Benchmarks log nowhere: per-request log lines would dominate.
	f.leaser.logger = lager.NewLogger("bench")
	return f, NewAPI(f.leaser.logger, f.leaser, nil, indexTTL).Handler(nil)
}

func call(b *testing.B, h http.Handler, method, path, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		b.Fatalf("%s %s = %d %s", method, path, rec.Code, rec.Body)
	}
	return rec
}

func fill(b *testing.B, f *fixture, n int) []lease.Lease {
	ctx := context.Background()
	out := make([]lease.Lease, n)
	for i := range out {
		l, err := f.leaser.Acquire(ctx, fmt.Sprintf("10.%d.%d.%d", 1+i/62500, (i/250)%250, i%250+1), false)
		if err != nil {
			b.Fatal(err)
		}
		out[i] = l
	}
	return out
}

// BenchmarkAcquire measures acquiring a fresh lease (then releasing it, so
// the pool never fills) in a /16 with 200 leases already taken.
func BenchmarkAcquire(b *testing.B) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			f, h := benchAPI(b, d, "10.255.0.0/16", 24, IndexCacheTTL)
			fill(b, f, 200)
			var lat benchlat.Latencies
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				call(b, h, "PUT", "/leases/acquire", `{"underlay_ip":"10.200.0.1"}`)
				lat.Add(time.Since(start))
				b.StopTimer()
				call(b, h, "PUT", "/leases/release", `{"underlay_ip":"10.200.0.1"}`)
				b.StartTimer()
			}
			lat.Report(b)
		})
	}
}

// BenchmarkRenew measures renewals from 1,000 cells (a /11 of /22s).
// "paced" sends them at 333/s, ten times the load of 1,000 cells renewing
// every 30 s, and reports the latency each request saw; "saturated" sends
// from 4 goroutines back to back and reports the throughput ceiling.
func BenchmarkRenew(b *testing.B) {
	for _, d := range dbtest.Dialects {
		f, h := benchAPI(b, d, "10.224.0.0/11", 22, IndexCacheTTL)
		cells := fill(b, f, 1000)
		bodies := make([]string, len(cells))
		for i, l := range cells {
			bodies[i] = fmt.Sprintf(`{"underlay_ip":%q,"overlay_subnet":%q,"overlay_hardware_addr":%q}`, l.UnderlayIP, l.OverlaySubnet, l.OverlayHardwareAddr)
		}
		b.Run(d+"/paced-333rps", func(b *testing.B) {
			var lat benchlat.Latencies
			var wg sync.WaitGroup
			tick := time.NewTicker(3 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-tick.C
				wg.Add(1)
				go func(body string) {
					defer wg.Done()
					start := time.Now()
					call(b, h, "PUT", "/leases/renew", body)
					lat.Add(time.Since(start))
				}(bodies[i%len(bodies)])
			}
			wg.Wait()
			lat.Report(b)
		})
		b.Run(d+"/saturated", func(b *testing.B) {
			var lat benchlat.Latencies
			var next sync.Mutex
			n := 0
			b.SetParallelism(2)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					next.Lock()
					body := bodies[n%len(bodies)]
					n++
					next.Unlock()
					start := time.Now()
					call(b, h, "PUT", "/leases/renew", body)
					lat.Add(time.Since(start))
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "renews/s")
			lat.Report(b)
		})
	}
}

// BenchmarkIndex measures GET /leases with 255 leases (a /16 of /24s) and
// 2,047 leases (a full /11 of /22s): "db" queries and encodes on every
// request (the cache disabled), "cached" is the shipped configuration under
// back-to-back polls.
func BenchmarkIndex(b *testing.B) {
	shapes := []struct {
		leases  int
		network string
		prefix  int
	}{{255, "10.255.0.0/16", 24}, {2047, "10.224.0.0/11", 22}}
	modes := []struct {
		name string
		ttl  time.Duration
	}{{"db", 0}, {"cached", IndexCacheTTL}}
	for _, d := range dbtest.Dialects {
		for _, s := range shapes {
			for _, m := range modes {
				b.Run(fmt.Sprintf("%s/%d/%s", d, s.leases, m.name), func(b *testing.B) {
					f, h := benchAPI(b, d, s.network, s.prefix, m.ttl)
					fill(b, f, s.leases)
					var lat benchlat.Latencies
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						start := time.Now()
						rec := call(b, h, "GET", "/leases", "")
						lat.Add(time.Since(start))
						if i == 0 && strings.Count(rec.Body.String(), "underlay_ip") != s.leases {
							b.Fatalf("index returned the wrong number of leases")
						}
					}
					lat.Report(b)
				})
			}
		}
	}
}
