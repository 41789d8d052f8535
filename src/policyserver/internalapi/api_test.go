package internalapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// fixture is the internal API over a real store on a fresh database.
type fixture struct {
	db      *sqldb.DB
	store   *store.Store
	sender  *metrics.Sender
	watcher *internalapi.Watcher
	handler http.Handler
}

func runWatcher(tb testing.TB, w *internalapi.Watcher) {
	wctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(wctx); close(done) }()
	tb.Cleanup(func() { cancel(); <-done })
}

func newFixture(tb testing.TB, dbType string, logger lager.Logger) *fixture {
	tb.Helper()
	db := openMigrated(tb, dbType, logger)
	sender, err := metrics.NewSender(nil, internalapi.Component, 0)
	if err != nil {
		tb.Fatal(err)
	}
	st := store.New(db, 2, sender)
	w := internalapi.NewPolicyWatcher(st.PolicySnapshot, 20*time.Millisecond)
	runWatcher(tb, w)
	sgw := internalapi.NewWatcher(st.SecurityGroupsLastUpdated, 20*time.Millisecond)
	runWatcher(tb, sgw)

	api := internalapi.NewAPI(logger, st, st, w, sender).WatchSecurityGroups(sgw)
	h := api.Handler(func(name string, h http.Handler) http.Handler {
		return metricsWrap(sender, name, internalapi.LogRequests(logger, h))
	})
	return &fixture{db: db, store: st, sender: sender, watcher: w, handler: h}
}

func metricsWrap(sender *metrics.Sender, name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		sender.SendDuration(name+"RequestTime", time.Since(start))
		sender.IncrementCounter(name + "RequestCount")
	})
}

func (f *fixture) do(t testing.TB, method, target, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest(method, target, strings.NewReader(body)))
	return rec
}

func (f *fixture) counter(name string) uint64 {
	n, _ := f.sender.Registry().Counter(name)
	return n
}

func policyOf(src, dst, proto string, start, end int) policy.Policy {
	return policy.NewPolicy(src, dst, proto, start, end)
}

func check(t *testing.T, rec *httptest.ResponseRecorder, status int, body string) {
	t.Helper()
	if rec.Code != status || rec.Body.String() != body {
		t.Fatalf("= %d %s\nwant %d %s", rec.Code, rec.Body, status, body)
	}
}

func TestPolicies(t *testing.T) { dbtest.EachDialect(t, testPolicies) }

func testPolicies(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	ctx := context.Background()

	check(t, f.do(t, "GET", "/networking/v1/internal/policies", ""), 200, `{"total_policies":0,"policies":[]}`)

	// Tags go to apps in order of first appearance: a=0001 b=0002 c=0003 d=0004.
	if err := f.store.Create(ctx, []policy.Policy{
		policyOf("a", "b", "tcp", 8080, 8080),
		policyOf("b", "c", "udp", 5000, 6000),
		policyOf("d", "a", "tcp", 22, 22),
	}); err != nil {
		t.Fatal(err)
	}
	ab := `{"source":{"id":"a","tag":"0001"},"destination":{"id":"b","tag":"0002","protocol":"tcp","ports":{"start":8080,"end":8080}}}`
	bc := `{"source":{"id":"b","tag":"0002"},"destination":{"id":"c","tag":"0003","protocol":"udp","ports":{"start":5000,"end":6000}}}`
	da := `{"source":{"id":"d","tag":"0004"},"destination":{"id":"a","tag":"0001","protocol":"tcp","ports":{"start":22,"end":22}}}`

	tests := []struct {
		name, target string
		want         []string
	}{
		{"all without id", "/networking/v1/internal/policies", []string{ab, bc, da}},
		{"source or destination", "/networking/v1/internal/policies?id=a", []string{ab, da}},
		{"several ids", "/networking/v1/internal/policies?id=c,d", []string{bc, da}},
		{"unknown id", "/networking/v1/internal/policies?id=nope", nil},
		{"empty id asks for the id \"\"", "/networking/v1/internal/policies?id=", nil},
		{"first id parameter only", "/networking/v1/internal/policies?id=c&id=a", []string{bc}},
		{"any version", "/networking/v0/internal/policies?id=b", []string{ab, bc}},
		{"even an empty version", "/networking//internal/policies?id=b", []string{ab, bc}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := f.do(t, "GET", tt.target, "")
			var got struct {
				Total    int               `json:"total_policies"`
				Policies []json.RawMessage `json:"policies"`
			}
			if rec.Code != 200 || json.Unmarshal(rec.Body.Bytes(), &got) != nil {
				t.Fatalf("= %d %s", rec.Code, rec.Body)
			}
			gotS := make([]string, len(got.Policies))
			for i, p := range got.Policies {
				gotS[i] = string(p)
			}
			// Database order is unspecified, as upstream.
			if diff := cmp.Diff(tt.want, gotS, cmpSorted); diff != "" || got.Total != len(tt.want) {
				t.Fatalf("total %d, policies (-want +got):\n%s", got.Total, diff)
			}
			if !strings.HasPrefix(rec.Body.String(), `{"total_policies":`) || rec.Header().Get("Strict-Transport-Security") != "max-age=31536000" {
				t.Fatalf("shape or headers: %v %s", rec.Header(), rec.Body)
			}
		})
	}
}

var cmpSorted = cmp.Transformer("sorted", func(in []string) []string {
	out := append([]string(nil), in...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
})

func TestPoliciesLastUpdated(t *testing.T) { dbtest.EachDialect(t, testPoliciesLastUpdated) }

func testPoliciesLastUpdated(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	ctx := context.Background()
	want, err := f.store.LastUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := f.do(t, "GET", "/networking/v1/internal/policies_last_updated", "")
	check(t, rec, 200, strconv.FormatInt(want, 10))
	if rec.Header().Get(internalapi.LongPollHeader) != "1" {
		t.Errorf("long-poll support not advertised: %v", rec.Header())
	}
	if err := f.store.Create(ctx, []policy.Policy{policyOf("a", "b", "tcp", 1, 1)}); err != nil {
		t.Fatal(err)
	}
	rec = f.do(t, "GET", "/networking/anything/internal/policies_last_updated", "")
	got, err := strconv.ParseInt(rec.Body.String(), 10, 64)
	if rec.Code != 200 || err != nil || got == want {
		t.Fatalf("after a create = %d %s; want a new integer", rec.Code, rec.Body)
	}
	if n := f.counter("InternalPoliciesLastUpdatedRequestCount"); n != 2 {
		t.Errorf("InternalPoliciesLastUpdatedRequestCount = %d", n)
	}
}

func TestLongPoll(t *testing.T) { dbtest.EachDialect(t, testLongPoll) }

func testLongPoll(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	ctx := context.Background()
	cur, err := f.store.LastUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	target := func(wait string, since int64) string {
		return fmt.Sprintf("/networking/v1/internal/policies_last_updated?wait=%s&since=%d", wait, since)
	}

	t.Run("answers at once when behind", func(t *testing.T) {
		start := time.Now()
		check(t, f.do(t, "GET", target("10", cur-1), ""), 200, strconv.FormatInt(cur, 10))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s", d)
		}
	})
	t.Run("times out with the same value", func(t *testing.T) {
		start := time.Now()
		rec := f.do(t, "GET", target("0.3", cur), "")
		check(t, rec, 200, strconv.FormatInt(cur, 10))
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("returned after %s", d)
		}
		if rec.Header().Get(internalapi.LongPollHeader) != "1" {
			t.Fatalf("headers %v", rec.Header())
		}
	})
	t.Run("returns promptly on change", func(t *testing.T) {
		res := make(chan *httptest.ResponseRecorder, 1)
		go func() { res <- f.do(t, "GET", target("20", cur), "") }()
		time.Sleep(200 * time.Millisecond)
		changed := time.Now()
		if err := f.store.Create(ctx, []policy.Policy{policyOf("a", "b", "tcp", 1, 1)}); err != nil {
			t.Fatal(err)
		}
		rec := <-res
		if lag := time.Since(changed); lag > 2*time.Second {
			t.Fatalf("answered %s after the change", lag)
		}
		now, _ := f.store.LastUpdated(ctx)
		check(t, rec, 200, strconv.FormatInt(now, 10))
	})
	t.Run("without both parameters it is upstream's plain read", func(t *testing.T) {
		now, _ := f.store.LastUpdated(ctx)
		for _, q := range []string{"?wait=10", fmt.Sprintf("?since=%d", now), "?wait=0&since=" + strconv.FormatInt(now, 10)} {
			start := time.Now()
			check(t, f.do(t, "GET", "/networking/v1/internal/policies_last_updated"+q, ""), 200, strconv.FormatInt(now, 10))
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("%s waited %s", q, d)
			}
		}
	})
	t.Run("bad parameters", func(t *testing.T) {
		check(t, f.do(t, "GET", "/networking/v1/internal/policies_last_updated?wait=soon&since=1", ""), 400, `{"error": "invalid value for 'wait' parameter"}`)
		check(t, f.do(t, "GET", "/networking/v1/internal/policies_last_updated?wait=-1&since=1", ""), 400, `{"error": "invalid value for 'wait' parameter"}`)
		check(t, f.do(t, "GET", "/networking/v1/internal/policies_last_updated?wait=1&since=x", ""), 400, `{"error": "invalid value for 'since' parameter"}`)
	})
	if n := f.counter("InternalPoliciesLastUpdatedLongPollRequestCount"); n < 3 {
		t.Errorf("long-polls counted under their own name: %d", n)
	}
}

func TestTargetedLongPoll(t *testing.T) { dbtest.EachDialect(t, testTargetedLongPoll) }

// A change written by another policy-server instance (straight to the
// database: no local notification) wakes the long-polls naming its source
// or destination app, both of them new apps given tags by the write, and
// no other; those learn at the end of their wait that their policies are
// unchanged at the new stamp.
func testTargetedLongPoll(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	ctx := context.Background()
	if err := f.store.Create(ctx, []policy.Policy{policyOf("app-a", "app-b", "tcp", 8080, 8080)}); err != nil {
		t.Fatal(err)
	}
	since, err := f.store.LastUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	other := store.New(f.db, 2, nil) // another instance on the same database

	const wait = 2 * time.Second
	type answer struct {
		rec *httptest.ResponseRecorder
		d   time.Duration
	}
	poll := func(ids string) <-chan answer {
		ch := make(chan answer, 1)
		go func() {
			start := time.Now()
			rec := f.do(t, "GET", fmt.Sprintf("/networking/v1/internal/policies_last_updated?wait=%g&since=%d&id=%s", wait.Seconds(), since, ids), "")
			ch <- answer{rec, time.Since(start)}
		}()
		return ch
	}
	polls := map[string]<-chan answer{
		"source cell":      poll("app-c,app-new-src,space-1"),
		"destination cell": poll("app-new-dst"),
		"unrelated cell":   poll("app-a,app-b,space-1"),
		"empty cell":       poll(""),
	}
	time.Sleep(300 * time.Millisecond)
	if err := other.Create(ctx, []policy.Policy{policyOf("app-new-src", "app-new-dst", "tcp", 9090, 9090)}); err != nil {
		t.Fatal(err)
	}
	now, err := f.store.LastUpdated(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for name, ch := range polls {
		a := <-ch
		woken := name == "source cell" || name == "destination cell"
		check(t, a.rec, 200, strconv.FormatInt(now, 10))
		unchanged := a.rec.Header().Get(internalapi.UnchangedSinceHeader)
		switch {
		case woken && (a.d > wait/2 || unchanged != ""):
			t.Errorf("%s: answered after %s, %s=%q; want woken by the change", name, a.d, internalapi.UnchangedSinceHeader, unchanged)
		case !woken && (a.d < wait || unchanged != strconv.FormatInt(since, 10)):
			t.Errorf("%s: answered after %s, %s=%q; want unchanged since %d after the wait", name, a.d, internalapi.UnchangedSinceHeader, unchanged, since)
		}
	}

	// Plain polls ignore id=.
	check(t, f.do(t, "GET", "/networking/v1/internal/policies_last_updated?id=app-a", ""), 200, strconv.FormatInt(now, 10))
}

func TestSecurityGroupsLastUpdated(t *testing.T) {
	dbtest.EachDialect(t, testSecurityGroupsLastUpdated)
}

func testSecurityGroupsLastUpdated(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	ctx := context.Background()
	path := "/networking/v1/internal/security_groups_last_updated"
	stamp := func() int64 {
		t.Helper()
		v, err := f.store.SecurityGroupsLastUpdated(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	replace := func(name string) {
		t.Helper()
		err := f.store.ReplaceSecurityGroups(ctx, []policy.SecurityGroup{{GUID: "g1", Name: name, Rules: "[]", RunningDefault: true}})
		if err != nil {
			t.Fatal(err)
		}
	}
	cur := stamp()

	t.Run("plain read is the bare stamp", func(t *testing.T) {
		rec := f.do(t, "GET", path, "")
		check(t, rec, 200, strconv.FormatInt(cur, 10))
		if rec.Header().Get(internalapi.LongPollHeader) != "1" || rec.Header().Get("Strict-Transport-Security") == "" {
			t.Errorf("headers %v", rec.Header())
		}
		check(t, f.do(t, "GET", "/networking/anything/internal/security_groups_last_updated", ""), 200, strconv.FormatInt(cur, 10))
	})
	t.Run("a replace with new content moves it", func(t *testing.T) {
		replace("one")
		now := stamp()
		if now <= cur {
			t.Fatalf("stamp %d not after %d", now, cur)
		}
		check(t, f.do(t, "GET", path, ""), 200, strconv.FormatInt(now, 10))
		cur = now
	})
	t.Run("a replace with the same content does not", func(t *testing.T) {
		replace("one")
		check(t, f.do(t, "GET", path, ""), 200, strconv.FormatInt(cur, 10))
	})
	t.Run("long-poll times out with the same value", func(t *testing.T) {
		start := time.Now()
		check(t, f.do(t, "GET", fmt.Sprintf("%s?wait=0.3&since=%d", path, cur), ""), 200, strconv.FormatInt(cur, 10))
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Fatalf("returned after %s", d)
		}
	})
	t.Run("long-poll answers at once when behind", func(t *testing.T) {
		check(t, f.do(t, "GET", fmt.Sprintf("%s?wait=10&since=%d", path, cur-1), ""), 200, strconv.FormatInt(cur, 10))
	})
	t.Run("long-poll returns promptly on change, not on a policy write", func(t *testing.T) {
		res := make(chan *httptest.ResponseRecorder, 1)
		go func() { res <- f.do(t, "GET", fmt.Sprintf("%s?wait=20&since=%d", path, cur), "") }()
		time.Sleep(150 * time.Millisecond)
		if err := f.store.Create(ctx, []policy.Policy{policyOf("a", "b", "tcp", 1, 1)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(150 * time.Millisecond)
		select {
		case rec := <-res:
			t.Fatalf("a policy write ended the security groups long-poll: %d %s", rec.Code, rec.Body)
		default:
		}
		changed := time.Now()
		replace("two")
		rec := <-res
		if lag := time.Since(changed); lag > 2*time.Second {
			t.Fatalf("answered %s after the change", lag)
		}
		check(t, rec, 200, strconv.FormatInt(stamp(), 10))
	})
	t.Run("bad parameters", func(t *testing.T) {
		check(t, f.do(t, "GET", path+"?wait=soon&since=1", ""), 400, `{"error": "invalid value for 'wait' parameter"}`)
		check(t, f.do(t, "GET", path+"?wait=1&since=x", ""), 400, `{"error": "invalid value for 'since' parameter"}`)
	})
	if n := f.counter("InternalSecurityGroupsLastUpdatedRequestCount"); n != 4 {
		t.Errorf("InternalSecurityGroupsLastUpdatedRequestCount = %d, want 4 (plain reads)", n)
	}
	if n := f.counter("InternalSecurityGroupsLastUpdatedLongPollRequestCount"); n != 5 {
		t.Errorf("InternalSecurityGroupsLastUpdatedLongPollRequestCount = %d, want 5", n)
	}
}

func TestCreateTags(t *testing.T) { dbtest.EachDialect(t, testCreateTags) }

func testCreateTags(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	const path = "/networking/v1/internal/tags"
	// The silk client sends capitalised keys.
	check(t, f.do(t, "PUT", path, `{"ID":"INGRESS_ROUTER","Type":"router"}`), 200, `{"id":"INGRESS_ROUTER","tag":"0001","type":"router"}`)
	check(t, f.do(t, "PUT", path, `{"id":"INGRESS_ROUTER","type":"router"}`), 200, `{"id":"INGRESS_ROUTER","tag":"0001","type":"router"}`)
	check(t, f.do(t, "PUT", path, `{"id":"other","type":"router","extra":1}`), 200, `{"id":"other","tag":"0002","type":"router"}`)
	check(t, f.do(t, "PUT", path, `{}`), 200, `{"id":"","tag":"0003","type":""}`)

	errorsBefore := f.counter("http_error")
	check(t, f.do(t, "PUT", path, `{"id":"INGRESS_ROUTER","type":"app"}`), 500, `{"error": "database create failed"}`)
	check(t, f.do(t, "PUT", path, `{"id":`), 400, `{"error": "failed parsing request body"}`)
	check(t, f.do(t, "PUT", path, ``), 400, `{"error": "failed parsing request body"}`)
	check(t, f.do(t, "PUT", path, `{"id":5}`), 400, `{"error": "failed parsing request body"}`)

	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest("PUT", path, errReader{}))
	check(t, rec, 400, `{"error": "failed reading request body"}`)
	if got := f.counter("http_error") - errorsBefore; got != 5 {
		t.Errorf("http_error counted %d errors, want 5", got)
	}

	// The tags route is literally v1.
	check(t, f.do(t, "PUT", "/networking/v0/internal/tags", `{}`), 404, "404 page not found\n")
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestSecurityGroups(t *testing.T) { dbtest.EachDialect(t, testSecurityGroups) }

func testSecurityGroups(t *testing.T, dbType string) {
	f := newFixture(t, dbType, logtest.New(t))
	groups := []policy.SecurityGroup{
		{GUID: "g1", Name: "default-staging", Rules: `[{"protocol":"tcp","destination":"10.0.11.0/24","ports":"80,443","type":0,"code":0,"description":"a <b> & c","log":true}]`, StagingDefault: true, StagingSpaceGUIDs: []string{}, RunningSpaceGUIDs: []string{}},
		{GUID: "g2", Name: "space-1", Rules: `[]`, StagingSpaceGUIDs: []string{"s1"}, RunningSpaceGUIDs: []string{"s1", "s2"}},
		{GUID: "g3", Name: "space-3", Rules: `[]`, RunningSpaceGUIDs: []string{"s3"}},
		{GUID: "g4", Name: "default-running", Rules: `[]`, RunningDefault: true},
	}
	if err := f.store.ReplaceSecurityGroups(context.Background(), groups); err != nil {
		t.Fatal(err)
	}
	body := func(next int, gs ...policy.SecurityGroup) string {
		type apiGroup struct {
			GUID              string   `json:"guid"`
			Name              string   `json:"name"`
			Rules             string   `json:"rules"`
			StagingDefault    bool     `json:"staging_default"`
			RunningDefault    bool     `json:"running_default"`
			StagingSpaceGUIDs []string `json:"staging_space_guids"`
			RunningSpaceGUIDs []string `json:"running_space_guids"`
		}
		out := struct {
			Next           int        `json:"next"`
			SecurityGroups []apiGroup `json:"security_groups"`
		}{Next: next, SecurityGroups: []apiGroup{}}
		for _, g := range gs {
			if g.StagingSpaceGUIDs == nil {
				g.StagingSpaceGUIDs = []string{}
			}
			if g.RunningSpaceGUIDs == nil {
				g.RunningSpaceGUIDs = []string{}
			}
			out.SecurityGroups = append(out.SecurityGroups, apiGroup(g))
		}
		b, _ := json.Marshal(out) // upstream's encoder
		return string(b)
	}
	row := func(guid string) int { // row ids follow insertion order
		return map[string]int{"g1": 1, "g2": 2, "g3": 3, "g4": 4}[guid]
	}
	const path = "/networking/v1/internal/security_groups"
	tests := []struct {
		name, query string
		want        string
	}{
		{"defaults only", "", body(0, groups[0], groups[3])},
		{"space guids", "?space_guids=s2,s3", body(0, groups[0], groups[1], groups[2], groups[3])},
		{"first space_guids only", "?space_guids=s3&space_guids=s1", body(0, groups[0], groups[2], groups[3])},
		{"per_page is ignored", "?space_guids=s1&per_page=1", body(0, groups[0], groups[1], groups[3])},
		{"limit gives next", "?space_guids=s1,s3&limit=2", body(row("g3"), groups[0], groups[1])},
		{"from continues", fmt.Sprintf("?space_guids=s1,s3&limit=2&from=%d", row("g3")), body(0, groups[2], groups[3])},
		{"limit 0 is unlimited", "?limit=0", body(0, groups[0], groups[3])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			check(t, f.do(t, "GET", path+tt.query, ""), 200, tt.want)
		})
	}
	check(t, f.do(t, "GET", path+"?limit=ten", ""), 500, `{"error": "invalid value for 'limit' parameter"}`)
	check(t, f.do(t, "GET", path+"?from=", ""), 500, `{"error": "invalid value for 'from' parameter"}`)
	check(t, f.do(t, "GET", path+"?from=x&limit=y", ""), 500, `{"error": "invalid value for 'from' parameter"}`)
}

func TestDatabaseFailures(t *testing.T) {
	f := newFixture(t, sqldb.TypeSQLite, logtest.New(t))
	_ = f.db.Close()
	for _, tt := range []struct{ method, path, body, want string }{
		{"GET", "/networking/v1/internal/policies", "", "database read failed"},
		{"GET", "/networking/v1/internal/policies?id=a", "", "database read failed"},
		{"GET", "/networking/v1/internal/policies_last_updated", "", "database read failed"},
		{"GET", "/networking/v1/internal/policies_last_updated?wait=5&since=1", "", "database read failed"},
		{"GET", "/networking/v1/internal/security_groups", "", "database read failed"},
		{"GET", "/networking/v1/internal/security_groups_last_updated", "", "database read failed"},
		{"GET", "/networking/v1/internal/security_groups_last_updated?wait=5&since=1", "", "database read failed"},
		{"PUT", "/networking/v1/internal/tags", `{"id":"x","type":"router"}`, "database create failed"},
	} {
		check(t, f.do(t, tt.method, tt.path, tt.body), 500, `{"error": "`+tt.want+`"}`)
	}
	if n := f.counter("http_error"); n != 8 {
		t.Errorf("http_error = %d, want 8", n)
	}
}

func TestRouting(t *testing.T) {
	f := newFixture(t, sqldb.TypeSQLite, logtest.New(t))
	tests := []struct {
		method, path string
		status       int
		body, allow  string
	}{
		{"GET", "/networking/v1/internal/healthcheck", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/internal/policies/", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/internal/security_groups_last_updated/", 404, "404 page not found\n", ""},
		{"HEAD", "/networking/v1/internal/security_groups_last_updated", 405, "", "GET"},
		{"PUT", "/networking/v1/internal/security_groups_last_updated", 405, "Method Not Allowed\n", "GET"},
		{"GET", "/networking/v1/v2/internal/policies", 404, "404 page not found\n", ""},
		{"GET", "/networking/", 404, "404 page not found\n", ""},
		{"GET", "/", 404, "404 page not found\n", ""},
		{"POST", "/networking/v1/internal/policies", 405, "Method Not Allowed\n", "GET"},
		{"HEAD", "/networking/v1/internal/policies_last_updated", 405, "", "GET"},
		{"GET", "/networking/v1/internal/tags", 405, "Method Not Allowed\n", "PUT"},
		{"DELETE", "/networking/v9/internal/security_groups", 405, "Method Not Allowed\n", "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := f.do(t, tt.method, tt.path, "")
			if tt.method == "HEAD" {
				rec.Body.Reset() // the server drops HEAD bodies
			}
			check(t, rec, tt.status, tt.body)
			if got := rec.Header().Get("Allow"); got != tt.allow {
				t.Errorf("Allow = %q, want %q", got, tt.allow)
			}
			if rec.Header().Get("Strict-Transport-Security") != "" || rec.Header().Get(internalapi.RequestIDHeader) != "" {
				t.Errorf("router answers carry routed-only headers: %v", rec.Header())
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	f := newFixture(t, sqldb.TypeSQLite, logtest.New(t))
	rec := f.do(t, "GET", "/networking/v1/internal/policies", "")
	id := rec.Header().Get(internalapi.RequestIDHeader)
	if len(id) != 36 {
		t.Fatalf("request id %q is not a UUID", id)
	}
	req := httptest.NewRequest("GET", "/networking/v1/internal/policies?id=x", nil)
	req.Header.Set(internalapi.RequestIDHeader, "from-gorouter")
	rec = httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	if got := rec.Header().Get(internalapi.RequestIDHeader); !strings.HasPrefix(got, "from-gorouter::") || len(got) != len("from-gorouter::")+36 {
		t.Fatalf("chained request id = %q", got)
	}
}

func TestErrorsAreLoggedWithTheRequestSession(t *testing.T) {
	var buf maintest.Buffer
	logger := lager.NewLogger("cfnetworking.policy-server-internal")
	logger.RegisterSink(lager.NewWriterSink(&buf, lager.DEBUG))
	f := newFixture(t, sqldb.TypeSQLite, logger)
	f.do(t, "GET", "/networking/v1/internal/security_groups?limit=x", "")
	var line struct {
		Message string            `json:"message"`
		Data    map[string]string `json:"data"`
	}
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, `"log_level":2`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !strings.HasPrefix(line.Message, "cfnetworking.policy-server-internal.request_") ||
		!strings.HasSuffix(line.Message, ".index-security-group-rules.invalid value for 'limit' parameter") ||
		line.Data["error"] == "" || line.Data["request_guid"] == "" {
		t.Fatalf("error line = %+v\nlog:\n%s", line, buf.String())
	}
}

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// migratedConfig returns a fresh, migrated database.
func migratedConfig(tb testing.TB, dbType string) sqldb.Config {
	return storetest.Config(tb, dbType)
}

// openMigrated returns a migrated database with the tag pool populated
// (tag length 2), fresh for this test.
func openMigrated(tb testing.TB, dbType string, logger lager.Logger) *sqldb.DB {
	return storetest.Open(tb, dbType, logger)
}
