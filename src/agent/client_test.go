package agent

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func TestMain(m *testing.M) { storetest.Main(m) }

// realServer is policy-server-internal's API over a fresh SQLite store.
func realServer(t *testing.T) (*store.Store, *Client) {
	t.Helper()
	st, url := realServerURL(t)
	return st, NewClient(url, nil, 5*time.Second)
}

// realServerURL is realServer's server, for clients of the caller's.
func realServerURL(t *testing.T) (*store.Store, string) {
	t.Helper()
	logger := logtest.New(t)
	sender, err := metrics.NewSender(nil, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(storetest.Open(t, "sqlite", logger), 2, sender)
	w := internalapi.NewPolicyWatcher(st.PolicySnapshot, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	srv := httptest.NewServer(internalapi.NewAPI(logger, st, st, w, sender).WatchSecurityGroups(runSGWatcher(t, st)).Handler(nil))
	t.Cleanup(func() { cancel(); <-done; srv.Close() })
	return st, srv.URL
}

func TestClientAgainstPolicyServerInternal(t *testing.T) {
	ctx := context.Background()
	st, client := realServer(t)
	if err := st.Create(ctx, []policy.Policy{
		policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8090),
		policy.NewPolicy("app-x", "app-y", "udp", 53, 53),
	}); err != nil {
		t.Fatal(err)
	}
	got, err := client.Policies(ctx, "app-b", "space-1")
	if err != nil {
		t.Fatal(err)
	}
	want := []c2c.Policy{{Source: c2c.Endpoint{ID: "app-a", Tag: got[0].Source.Tag},
		Destination: c2c.Destination{ID: "app-b", Tag: got[0].Destination.Tag, Protocol: "tcp", Start: 8080, End: 8090}}}
	if diff := cmp.Diff(want, got); diff != "" || len(got[0].Source.Tag) != 4 {
		t.Errorf("policies (-want +got):\n%s", diff)
	}
	all, err := client.Policies(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("all policies: %v %v", all, err)
	}

	v, offered, err := client.LastUpdated(ctx)
	if err != nil || !offered || v == 0 {
		t.Fatalf("last updated: %d %v %v", v, offered, err)
	}
	// A long-poll returns at once when the value already moved on ...
	if got, ok, err := client.WaitLastUpdated(ctx, v-1, 5*time.Second, time.Second); err != nil || !ok || got != v {
		t.Fatalf("long-poll with an old value: %d %v %v", got, ok, err)
	}
	// ... and as soon as a write moves it.
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = st.Delete(ctx, []policy.Policy{policy.NewPolicy("app-x", "app-y", "udp", 53, 53)})
	}()
	start := time.Now()
	got2, ok, err := client.WaitLastUpdated(ctx, v, 10*time.Second, time.Second)
	if err != nil || !ok || got2 == v {
		t.Fatalf("long-poll across a write: %d %v %v", got2, ok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("long-poll answered after %v", took)
	}

	tag, err := client.CreateOrGetTag(ctx, "INGRESS_ROUTER", "router")
	if err != nil || len(tag) != 4 {
		t.Fatalf("tag %q %v", tag, err)
	}
	again, _ := client.CreateOrGetTag(ctx, "INGRESS_ROUTER", "router")
	if again != tag {
		t.Errorf("tag changed: %s then %s", tag, again)
	}

	if err := st.ReplaceSecurityGroups(ctx, []policy.SecurityGroup{
		{GUID: "sg-1", Name: "public", Rules: `[{"protocol":"all","destination":"0.0.0.0-255.255.255.255"}]`, RunningDefault: true},
		{GUID: "sg-2", Name: "space", Rules: `[]`, RunningSpaceGUIDs: []string{"space-1"}},
		{GUID: "sg-3", Name: "other", Rules: `[]`, RunningSpaceGUIDs: []string{"space-9"}},
	}); err != nil {
		t.Fatal(err)
	}
	groups, err := client.SecurityGroups(ctx, []string{"space-1"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range groups {
		names = append(names, g.Name)
	}
	if diff := cmp.Diff([]string{"public", "space"}, names); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}

	sv, offered, err := client.SecurityGroupsLastUpdated(ctx)
	if err != nil || !offered || sv == 0 {
		t.Fatalf("security groups last updated: %d %v %v", sv, offered, err)
	}
	if got, ok, err := client.WaitSecurityGroupsLastUpdated(ctx, sv-1, 5*time.Second, time.Second); err != nil || !ok || got != sv {
		t.Fatalf("security groups long-poll with an old value: %d %v %v", got, ok, err)
	}
	go func() {
		time.Sleep(200 * time.Millisecond)
		_ = st.ReplaceSecurityGroups(ctx, nil)
	}()
	start = time.Now()
	if got, ok, err := client.WaitSecurityGroupsLastUpdated(ctx, sv, 10*time.Second, time.Second); err != nil || !ok || got <= sv {
		t.Fatalf("security groups long-poll across a replace: %d %v %v", got, ok, err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("security groups long-poll answered after %v", took)
	}
}

func TestClientRejectsGarbage(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name, body string
		code       int
	}{
		{"not json", "<html>oops</html>", 200},
		{"no total_policies", `{"policies":[]}`, 200},
		{"server error", `{"error": "database read failed"}`, 500},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tt.code)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c := NewClient(srv.URL, nil, time.Second)
			if _, err := c.Policies(ctx, "a"); err == nil {
				t.Fatal("want an error")
			}
			if _, err := c.SecurityGroups(ctx, nil); err == nil {
				t.Fatal("want an error for security groups")
			}
		})
	}
}

func TestClientAgainstUpstreamServerFallsBack(t *testing.T) {
	// An upstream server ignores wait/since and sends no long-poll header.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasSuffix(r.URL.Path, "policies_last_updated"):
			_, _ = w.Write([]byte("42"))
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL, nil, time.Second)
	v, offered, err := c.LastUpdated(context.Background())
	if err != nil || offered || v != 42 {
		t.Fatalf("%d %v %v", v, offered, err)
	}
	if _, ok, err := c.WaitLastUpdated(context.Background(), 42, time.Second, time.Second); err != nil || ok {
		t.Fatalf("long-poll against upstream: ok=%v err=%v", ok, err)
	}
	// v3.53.0 has no security_groups_last_updated: a 404 the agent can tell.
	_, _, err = c.SecurityGroupsLastUpdated(context.Background())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusNotFound {
		t.Fatalf("security_groups_last_updated against v3.53.0: %v", err)
	}
}

// runSGWatcher runs a security_groups_last_updated watcher over st until
// the test ends.
func runSGWatcher(t *testing.T, st *store.Store) *internalapi.Watcher {
	w := internalapi.NewWatcher(st.SecurityGroupsLastUpdated, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// TestClientsShareNoTLSConfig: the first request of an HTTP/2-capable
// transport writes NextProtos into its TLS config, so clients made from one
// config, and a client's plain and long-poll transports, must each hold a
// copy (under -race, concurrent first requests on a shared config race).
func TestClientsShareNoTLSConfig(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"total_policies":0,"policies":[]}`))
	}))
	t.Cleanup(srv.Close)
	shared := srv.Client().Transport.(*http.Transport).TLSClientConfig
	a, b := NewClient(srv.URL, shared, 5*time.Second), NewClient(srv.URL, shared, 5*time.Second)
	seen := map[any]bool{shared: true}
	for _, c := range []*Client{a, b} {
		for _, hc := range []*http.Client{c.http.HTTP, c.longPoll.HTTP} {
			cfg := hc.Transport.(*http.Transport).TLSClientConfig
			if seen[cfg] {
				t.Fatalf("a transport's TLS config %p is shared", cfg)
			}
			seen[cfg] = true
		}
	}
	errs := make(chan error, 4)
	for _, c := range []*Client{a, b} {
		for _, hc := range []*http.Client{c.http.HTTP, c.longPoll.HTTP} {
			go func() {
				resp, err := hc.Get(srv.URL + "/networking/v1/internal/policies")
				if err == nil {
					resp.Body.Close()
				}
				errs <- err
			}()
		}
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
