package internalapi_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/testsupport/dbtest"

	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/testsupport/benchlat"
)

// Benchmarks drive the internal handler in-process, wrapped as Run wraps it
// (request ids, logging into a sink-less logger, metrics into the
// registry), over the real store, so they measure routing, the store, SQL
// and encoding, not TLS handshakes (agents keep their connections alive).
// Run with:
//   go test -run '^$' -bench . -benchtime 2000x ./src/policyserver/internalapi/
// The data set is 60,000 policies between 6,000 apps, each app the source
// of 10 policies and the destination of 10.

const ()

type benchServer struct {
	store   *store.Store
	watcher *internalapi.Watcher
	handler http.Handler
}

// seeded memoizes one 60k-policy server per dialect for the parent
// benchmark's lifetime: seeding takes seconds.
func seeded(parent *testing.B) func(dbType string) *benchServer {
	servers := map[string]*benchServer{}
	return func(dbType string) *benchServer {
		if s, ok := servers[dbType]; ok {
			return s
		}
		logger := lager.NewLogger("bench") // no sinks: logging costs what it costs in production minus the I/O
		db := openMigrated(parent, dbType, logger)
		sender, err := metrics.NewSender(nil, internalapi.Component, 0)
		if err != nil {
			parent.Fatal(err)
		}
		st := store.New(db, 2, sender)
		storetest.SeedBenchPolicies(parent, st)
		w := internalapi.NewWatcher(st.LastUpdated, internalapi.DefaultWatchInterval)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = w.Run(ctx); close(done) }()
		parent.Cleanup(func() { cancel(); <-done })
		h := internalapi.NewAPI(logger, st, st, w, sender).CachePlainPolls(internalapi.PlainPollTTL).Handler(func(name string, h http.Handler) http.Handler {
			return lifecycle.MetricsMiddleware(sender, name, internalapi.LogRequests(logger, h))
		})
		s := &benchServer{store: st, watcher: w, handler: h}
		servers[dbType] = s
		return s
	}
}

// backgroundWriter creates or deletes one policy every interval until stop.
func backgroundWriter(b *testing.B, s *store.Store, interval time.Duration) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		p := policy.NewPolicy(storetest.BenchApp(1), storetest.BenchApp(2), "udp", 9999, 9999)
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

func serve(b *testing.B, h http.Handler, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	if rec.Code != http.StatusOK {
		b.Errorf("GET %s = %d %s", target, rec.Code, rec.Body)
	}
	return rec
}

// benchPolicies250 asks, as a cell's agent does, for the policies of 250
// random apps (source or destination) at 60,000 policies, back to back from
// one client; with writeEvery > 0 a policy is written that often, and the
// next request pays the store's reload.
func benchPolicies250(b *testing.B, writeEvery time.Duration) {
	server := seeded(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := server(d)
			if writeEvery > 0 {
				defer backgroundWriter(b, s.store, writeEvery)()
			}
			serve(b, s.handler, "/networking/v1/internal/policies?id=warm-up")
			rng := rand.New(rand.NewPCG(1, 2))
			ids := make([]string, 250)
			var lat benchlat.Latencies
			var size, policies int
			for b.Loop() {
				for j := range ids {
					ids[j] = storetest.BenchApp(rng.IntN(storetest.BenchApps))
				}
				target := "/networking/v1/internal/policies?id=" + strings.Join(ids, ",")
				t0 := time.Now()
				rec := serve(b, s.handler, target)
				lat.Add(time.Since(t0))
				size += rec.Body.Len()
				policies += totalPolicies(b, rec.Body.Bytes())
			}
			b.ReportMetric(float64(policies)/float64(b.N), "policies/op")
			b.ReportMetric(float64(size)/float64(b.N), "resp-bytes/op")
			lat.Report(b)
		})
	}
}

// BenchmarkPolicies250 is the steady state between policy changes.
func BenchmarkPolicies250(b *testing.B) { benchPolicies250(b, 0) }

// BenchmarkPolicies250Writes has a policy write every second.
func BenchmarkPolicies250Writes(b *testing.B) { benchPolicies250(b, time.Second) }

// BenchmarkLastUpdatedPaced sends GET policies_last_updated at 200 req/s
// (1,000 cells polling every 5 s) with a policy write every second, and
// reports the latency each request saw.
func BenchmarkLastUpdatedPaced(b *testing.B) {
	server := seeded(b)
	for _, d := range dbtest.Dialects {
		b.Run(d+"/200rps", func(b *testing.B) {
			s := server(d)
			defer backgroundWriter(b, s.store, time.Second)()
			var lat benchlat.Latencies
			var wg sync.WaitGroup
			tick := time.NewTicker(5 * time.Millisecond)
			defer tick.Stop()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				<-tick.C
				wg.Add(1)
				go func() {
					defer wg.Done()
					t0 := time.Now()
					serve(b, s.handler, "/networking/v1/internal/policies_last_updated")
					lat.Add(time.Since(t0))
				}()
			}
			wg.Wait()
			lat.Report(b)
		})
	}
}

// BenchmarkLongPollFanout parks 1,000 long-polls (1,000 cells), writes one
// policy, and measures how long after the write's commit each long-poll is
// answered with the new value, and how many LastUpdated reads the database
// served per round (the watcher's, not one per waiter).
func BenchmarkLongPollFanout(b *testing.B) {
	server := seeded(b)
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			s := server(d)
			p := policy.NewPolicy(storetest.BenchApp(3), storetest.BenchApp(4), "udp", 9998, 9998)
			longPollFanout(b, s.store.LastUpdated, "policies_last_updated",
				func(ctx context.Context, i int) error {
					if i%2 == 0 {
						return s.store.Create(ctx, []policy.Policy{p})
					}
					return s.store.Delete(ctx, []policy.Policy{p})
				}, s.store)
		})
	}
}

// BenchmarkSecurityGroupsLongPollFanout is the same for
// security_groups_last_updated: 1,000 long-polls parked on it over a store
// holding 1,000 security groups, then one ReplaceSecurityGroups that
// renames one group (what the ASG syncer writes after a change in Cloud
// Controller).
func BenchmarkSecurityGroupsLongPollFanout(b *testing.B) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			logger := lager.NewLogger("bench")
			st := store.New(openMigrated(b, d, logger), 2, nil)
			groups := make([]policy.SecurityGroup, 1000)
			for i := range groups {
				groups[i] = policy.SecurityGroup{GUID: "sg-" + strconv.Itoa(i), Name: "sg", Rules: `[{"protocol":"tcp","destination":"10.0.0.0/8","ports":"443"}]`,
					RunningSpaceGUIDs: []string{"space-" + strconv.Itoa(i%100)}, StagingSpaceGUIDs: []string{}}
			}
			ctx := context.Background()
			if err := st.ReplaceSecurityGroups(ctx, groups); err != nil {
				b.Fatal(err)
			}
			longPollFanout(b, st.SecurityGroupsLastUpdated, "security_groups_last_updated",
				func(ctx context.Context, i int) error {
					groups[0].Name = "sg-" + strconv.Itoa(i)
					return st.ReplaceSecurityGroups(ctx, groups)
				}, st)
		})
	}
}

// longPollFanout parks 1,000 long-polls on route (policies_last_updated or
// security_groups_last_updated), answered by one watcher over read, runs
// write once per round and reports commit → answer latencies and the
// watcher's reads per round.
func longPollFanout(b *testing.B, read func(context.Context) (int64, error), route string, write func(ctx context.Context, round int) error, st *store.Store) {
	const waiters = 1000
	ctx := context.Background()
	var lat benchlat.Latencies
	var reads atomic.Int64
	countingRead := func(ctx context.Context) (int64, error) {
		reads.Add(1)
		return read(ctx)
	}
	w := internalapi.NewWatcher(countingRead, internalapi.DefaultWatchInterval)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = w.Run(wctx) }()
	var api *internalapi.API
	if route == "security_groups_last_updated" {
		api = internalapi.NewAPI(lager.NewLogger("bench"), st, st, nil, nil).WatchSecurityGroups(w)
	} else {
		api = internalapi.NewAPI(lager.NewLogger("bench"), st, st, w, nil)
	}
	h := api.Handler(nil)
	for i := 0; b.Loop(); i++ {
		since, err := read(ctx)
		if err != nil {
			b.Fatal(err)
		}
		target := "/networking/v1/internal/" + route + "?wait=30&since=" + strconv.FormatInt(since, 10)
		answered := make([]time.Time, waiters)
		var wg sync.WaitGroup
		for j := range waiters {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rec := serve(b, h, target)
				answered[j] = time.Now()
				if rec.Body.String() == strconv.FormatInt(since, 10) {
					b.Errorf("long-poll timed out")
				}
			}()
		}
		time.Sleep(300 * time.Millisecond) // all parked
		err = write(ctx, i)
		committed := time.Now()
		if err != nil {
			b.Fatal(err)
		}
		wg.Wait()
		for _, t := range answered {
			lat.Add(t.Sub(committed))
		}
	}
	b.ReportMetric(float64(reads.Load())/float64(b.N), "db-reads/round")
	lat.Report(b)
}

// totalPolicies reads N from an answer starting {"total_policies":N,.
func totalPolicies(b *testing.B, body []byte) int {
	rest, ok := bytes.CutPrefix(body, []byte(`{"total_policies":`))
	end := bytes.IndexByte(rest, ',')
	if !ok || end < 0 {
		b.Fatalf("answer %.60s... is not a policy list", body)
	}
	n, err := strconv.Atoi(string(rest[:end]))
	if err != nil {
		b.Fatal(err)
	}
	return n
}
