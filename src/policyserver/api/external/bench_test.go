package external_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// BenchmarkPoliciesIndex is an admin GET .../policies with 10,000 stored
// policies on SQLite: routing, token check (fake UAA over loopback HTTP),
// the query, tag stripping and encoding.
func BenchmarkPoliciesIndex(b *testing.B) {
	for _, version := range []string{"v1", "v0"} {
		b.Run(version, func(b *testing.B) {
			h := newHarness(b, func(s *setup) { s.sqlite = true })
			ps := make([]policy.Policy, 10000)
			for i := range ps {
				ps[i] = policy.NewPolicy(fmt.Sprintf("src-%04d-4fa0-8c1e-3c9e0d6b2a71", i%2000), fmt.Sprintf("dst-%04d-4fa0-8c1e-3c9e0d6b2a71", i%1000), "tcp", 8000+i/1000, 8000+i/1000+i%2)
			}
			if err := h.store.Create(context.Background(), ps); err != nil {
				b.Fatal(err)
			}
			path := "/networking/" + version + "/external/policies"
			latencies := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				req := httptest.NewRequest("GET", path, nil)
				req.Header.Set("Authorization", "Bearer "+adminToken)
				rec := httptest.NewRecorder()
				h.handler.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%d %s", rec.Code, rec.Body.String())
				}
				latencies = append(latencies, time.Since(start))
			}
			reportPercentiles(b, latencies)
		})
	}
}

// BenchmarkCreateAsSpaceDeveloper is a non-admin create of one policy:
// check_token, the space-developer guard against the fake Cloud Controller
// (three calls; the client token is cached), the quota query and the
// insert, on SQLite.
func BenchmarkCreateAsSpaceDeveloper(b *testing.B) {
	h := newHarness(b, func(s *setup) { s.sqlite = true; s.maxPolicies = 1 << 30 })
	latencies := make([]time.Duration, 0, b.N)
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		i++
		body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1+i%65535, 1+i%65535))
		start := time.Now()
		req := httptest.NewRequest("POST", v1Path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+aliceWrite)
		rec := httptest.NewRecorder()
		h.handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("%d %s", rec.Code, rec.Body.String())
		}
		latencies = append(latencies, time.Since(start))
	}
	reportPercentiles(b, latencies)
}

func reportPercentiles(b *testing.B, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(q float64) float64 { return float64(d[int(q*float64(len(d)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
