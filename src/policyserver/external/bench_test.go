package external_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"

	"github.com/netman-release/netman/src/testsupport/benchlat"
)

// BenchmarkPoliciesIndex is an admin GET .../policies with 60,000 stored
// policies on each dialect: routing, token check (fake UAA over loopback
// HTTP), the query, tag stripping and encoding.
func BenchmarkPoliciesIndex(b *testing.B) {
	const total, batch = 60000, 2000
	for _, dbType := range dbtest.Dialects {
		for _, version := range []string{"v1", "v0"} {
			b.Run(dbType+"/"+version, func(b *testing.B) {
				h := newHarness(b, func(s *setup) {
					if dbType == sqldb.TypeSQLite {
						s.sqlite = true
					} else {
						s.serverDB = dbType
					}
				})
				for n := 0; n < total; n += batch {
					ps := make([]policy.Policy, batch)
					for j := range ps {
						i := n + j
						ps[j] = policy.NewPolicy(fmt.Sprintf("src-%05d-4fa0-8c1e-3c9e0d6b2a71", i%6000), fmt.Sprintf("dst-%05d-4fa0-8c1e-3c9e0d6b2a71", i%3000), "tcp", 8000+i/3000, 8000+i/3000+i%2)
					}
					if err := h.store.Create(context.Background(), ps); err != nil {
						b.Fatal(err)
					}
				}
				benchIndex(b, h, version)
			})
		}
	}
}

func benchIndex(b *testing.B, h *harness, version string) {
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
	benchlat.Report(b, "", latencies)
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
	benchlat.Report(b, "", latencies)
}
