package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/observe"
)

// getJSONFrom GETs path from h, checks the status and decodes the answer
// into v.
func getJSONFrom(t *testing.T, h http.Handler, path string, wantCode int, v any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	if rec.Code != wantCode {
		t.Fatalf("GET %s: %d %s, want %d", path, rec.Code, rec.Body, wantCode)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET %s: content type %q", path, ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), v); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, rec.Body)
	}
}

func TestEnforcedEndpoint(t *testing.T) {
	f := newFixture(t, false, 3600)
	h := enforcedHandler(f.policies, "iptables")

	var before observe.Enforced
	getJSONFrom(t, h, observe.PathEnforced, 200, &before)
	if before.LastCycle != nil || before.LastAttempt != nil || len(before.Destinations) != 0 || before.Backend != "iptables" {
		t.Errorf("before any cycle: %+v", before)
	}

	udp := c2c.Policy{Source: c2c.Endpoint{ID: "app-a", Tag: "0001"}, Destination: c2c.Destination{ID: "app-b", Tag: "0002", Protocol: "udp", Start: 5000, End: 5010}}
	f.server.set(policyAB(8080), udp)
	start := time.Now()
	if err := f.policies.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	var got observe.Enforced
	getJSONFrom(t, h, observe.PathEnforced, 200, &got)
	if got.LastCycle == nil || got.LastCycle.Before(start.Add(-time.Second)) || got.LastError != "" {
		t.Errorf("last cycle %v, error %q: want just now and none", got.LastCycle, got.LastError)
	}
	if got.Chain != f.policies.enforcer.Chain() || got.Chain == "" {
		t.Errorf("chain %q, want the live chain %q", got.Chain, f.policies.enforcer.Chain())
	}
	if got.PoliciesLastUpdated != f.server.version {
		t.Errorf("policies_last_updated %d, want the server's %d", got.PoliciesLastUpdated, f.server.version)
	}
	wantSrc := []observe.MarkedSource{{IP: "10.255.1.2", AppGUID: "app-a", Tag: "0001"}}
	wantDst := []observe.Destination{{IP: "10.255.1.3", AppGUID: "app-b", Rules: []observe.AllowRule{
		{SourceAppGUID: "app-a", SourceTag: "0001", Protocol: "udp", StartPort: 5000, EndPort: 5010},
		{SourceAppGUID: "app-a", SourceTag: "0001", Protocol: "tcp", StartPort: 8080, EndPort: 8080},
	}}}
	if diff := cmp.Diff(wantSrc, got.Sources); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantDst, got.Destinations); diff != "" {
		t.Errorf("destinations (-want +got):\n%s", diff)
	}
	if _, ok := got.Allows("10.255.1.3", "0001", "udp", 5005); !ok {
		t.Error("Allows: udp 5005 from 0001 not found")
	}
	if _, ok := got.Allows("10.255.1.3", "0001", "tcp", 8081); ok {
		t.Error("Allows: tcp 8081 found")
	}

	// A failed cycle: the rules (and what the endpoint shows) stay, with
	// the error and the attempt's time.
	f.server.fail(errors.New("connection refused"))
	if err := f.policies.Sync(context.Background()); err == nil {
		t.Fatal("want the error")
	}
	var failed observe.Enforced
	getJSONFrom(t, h, observe.PathEnforced, 200, &failed)
	if failed.LastError == "" || failed.LastAttempt == nil || failed.LastAttempt.Before(*failed.LastCycle) {
		t.Errorf("after a failed cycle: error %q, attempt %v, last good %v", failed.LastError, failed.LastAttempt, failed.LastCycle)
	}
	if diff := cmp.Diff(wantDst, failed.Destinations); diff != "" {
		t.Errorf("destinations after a failed cycle (-want +got):\n%s", diff)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, observe.PathEnforced, nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", rec.Code)
	}
}

func TestContainersEndpoint(t *testing.T) {
	f := newFixture(t, false, 3600)
	ctx := context.Background()
	lc := `{"guid":"app-c","index":0,"source_name":"CELL","tags":{"app_name":"catalog","space_name":"dev"}}`
	if err := f.store.Add(ctx, "h3", "10.255.1.4", map[string]any{
		"policy_group_id": "app-c", "space_id": "space-2", "org_id": "org-1", "ports": "8080", "container_workload": "app", "log_config": lc,
	}); err != nil {
		t.Fatal(err)
	}
	f.server.set(policyAB(8080))
	if err := f.policies.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	h := containersHandler(f.policies, f.store, []string{"10.0.0.11"})
	var got observe.Containers
	getJSONFrom(t, h, observe.PathContainers, 200, &got)
	want := observe.Containers{UnderlayIPs: []string{"10.0.0.11"}, Containers: []observe.Container{
		{Handle: "h1", IP: "10.255.1.2", AppGUID: "app-a", SpaceGUID: "space-1", Workload: "app", Tag: "0001"},
		{Handle: "h2", IP: "10.255.1.3", AppGUID: "app-b", SpaceGUID: "space-1", Workload: "app", Tag: "0002"},
		{Handle: "h3", IP: "10.255.1.4", AppGUID: "app-c", SpaceGUID: "space-2", OrgGUID: "org-1", AppName: "catalog", Ports: "8080", Workload: "app"},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
}
