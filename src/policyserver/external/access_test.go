package external_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
)

const denied = "one or more applications cannot be found or accessed"

func TestSpaceDeveloperGuard(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		inA := v1Body(v1Policy("app-a1", "app-a2", "tcp", 8080, 8080))
		// alice develops in space-a: allowed, after exactly upstream's CC calls.
		h.expect(h.do("POST", v1Path, aliceWrite, inA), 200, "{}")
		want := []string{
			"GET /v3/apps?guids=app-a1%2Capp-a2&per_page=2",
			"GET /v2/spaces/space-a",
			"GET /v2/spaces?q=developer_guid%3Auid-alice&q=name%3Adev&q=organization_guid%3Aorg-1",
		}
		if diff := cmp.Diff(want, h.cc.recorded()); diff != "" {
			t.Fatalf("CC requests (-want +got):\n%s", diff)
		}
		// bob does not: neither create nor delete.
		h.expect(h.do("POST", v1Path, bobWrite, inA), 403, errBody(denied))
		h.expect(h.do("POST", v1Path+"/delete", bobWrite, inA), 403, errBody(denied))
		// A policy across spaces needs both.
		across := v1Body(v1Policy("app-a1", "app-b1", "tcp", 1, 1))
		h.expect(h.do("POST", v1Path, aliceWrite, across), 403, errBody(denied))
		h.expect(h.do("POST", v1Path, bobWrite, across), 403, errBody(denied))
		h.cc.addSpace("space-b", "prod", "org-1", "uid-bob", "uid-alice")
		h.expect(h.do("POST", v0Path, aliceWrite, v1Body(v0Policy("app-a1", "app-b1", "tcp", 1))), 200, "{}")
		h.expect(h.do("POST", v1Path+"/delete", aliceWrite, inA), 200, "{}")
		if diff := cmp.Diff([]policy.Policy{policy.NewPolicy("app-a1", "app-b1", "tcp", 1, 1)}, h.stored()); diff != "" {
			t.Fatalf("stored (-want +got):\n%s", diff)
		}
	})
}

func TestGuardUnknownAppsAndSpaces(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		withGhost := v1Body(v1Policy("app-a1", "ghost", "tcp", 1, 1))
		// netman fix: upstream let a create naming unknown apps through.
		h.expect(h.do("POST", v1Path, aliceWrite, withGhost), 403, errBody(denied))
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(v1Policy("ghost", "ghost2", "tcp", 1, 1))), 403, errBody(denied))
		// Deleting a policy to a deleted app stays possible.
		h.expect(h.do("POST", v1Path, adminToken, withGhost), 200, "{}")
		h.expect(h.do("POST", v1Path+"/delete", aliceWrite, withGhost), 200, "{}")
		if len(h.stored()) != 0 {
			t.Fatal("not deleted")
		}
		// An app whose space CC no longer has (404) denies.
		h.cc.addApp("orphan", "space-gone")
		h.expect(h.do("POST", v1Path+"/delete", aliceWrite, v1Body(v1Policy("app-a1", "orphan", "tcp", 1, 1))), 403, errBody(denied))
		// An ambiguous space search is an error, as upstream.
		h.cc.mu.Lock()
		h.cc.duplicate = true
		h.cc.mu.Unlock()
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1))), 500, errBody("check access failed"))
	})
}

func TestGuardFailuresAre500(t *testing.T) {
	body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1))
	t.Run("cc down", func(t *testing.T) {
		h := newHarness(t)
		h.cc.down.Store(true)
		h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check access failed"))
		h.expect(h.do("POST", v1Path+"/delete", aliceWrite, body), 500, errBody("check access failed"))
		h.expect(h.do("GET", v1Path, aliceWrite, ""), 200, `{"total_policies":0,"policies":[]}`) // nothing to filter
		h.expect(h.do("POST", v1Path, adminToken, body), 200, "{}")                              // admins never ask CC
		h.expect(h.do("GET", v1Path, aliceWrite, ""), 500, errBody("filter policies failed"))
	})
	t.Run("cc slow", func(t *testing.T) {
		h := newHarness(t, func(s *setup) { s.timeout = 100 * time.Millisecond })
		h.cc.delay.Store(int64(time.Second))
		start := time.Now()
		h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check access failed"))
		if time.Since(start) > 800*time.Millisecond {
			t.Errorf("took %v: the CC call was not bounded", time.Since(start))
		}
	})
	t.Run("cc unreachable", func(t *testing.T) {
		h := newHarness(t)
		h.cc.Close()
		h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check access failed"))
	})
	t.Run("client token refused", func(t *testing.T) {
		h := newHarness(t)
		h.cc.mu.Lock()
		h.cc.clientToken = "another-token"
		h.cc.mu.Unlock()
		h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check access failed"))
		h.cc.mu.Lock()
		h.cc.clientToken = h.uaa.clientToken
		h.cc.mu.Unlock()
		// The refused token was dropped from the cache, so the next request works.
		h.expect(h.do("POST", v1Path, aliceWrite, body), 200, "{}")
		if n := h.uaa.tokenRequests.Load(); n != 2 {
			t.Errorf("client token fetched %d times, want 2", n)
		}
	})
	t.Run("client grant refused", func(t *testing.T) {
		h := newHarness(t)
		h.uaa.refuseGrant.Store(true)
		h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check access failed"))
		h.expect(h.do("POST", v1Path, adminToken, body), 200, "{}")
		h.expect(h.do("GET", v1Path, aliceWrite, ""), 500, errBody("filter policies failed"))
		h.expect(h.do("POST", v1Path+"/cleanup", adminToken, ""), 500, errBody("policies cleanup failed"))
	})
}

func TestClientTokenIsCached(t *testing.T) {
	h := newHarness(t)
	body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1))
	for range 3 {
		h.expect(h.do("POST", v1Path, aliceWrite, body), 200, "{}")
	}
	if n := h.uaa.tokenRequests.Load(); n != 1 {
		t.Errorf("client token fetched %d times for 3 requests", n)
	}
}

func TestQuota(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore, func(s *setup) { s.maxPolicies = 2 })
		p := func(port int) string { return v1Policy("app-a1", "app-a2", "tcp", port, port) }
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(p(1), p(2), p(3))), 403, errBody("policy quota exceeded"))
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(p(1), p(2))), 200, "{}")
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(p(3))), 403, errBody("policy quota exceeded"))
		// Re-creating an existing policy still counts, as upstream.
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(p(1))), 403, errBody("policy quota exceeded"))
		// The quota is per source: app-a2 may still be a source.
		h.expect(h.do("POST", v1Path, aliceWrite, v1Body(v1Policy("app-a2", "app-a1", "tcp", 1, 1), v1Policy("app-a2", "app-a1", "tcp", 2, 2))), 200, "{}")
		// Admins are exempt.
		h.expect(h.do("POST", v1Path, adminToken, v1Body(p(3), p(4))), 200, "{}")
		if got := len(h.stored()); got != 6 {
			t.Errorf("stored %d policies, want 6", got)
		}
		// The guard runs before the quota.
		h.expect(h.do("POST", v1Path, bobWrite, v1Body(p(5), p(6), p(7))), 403, errBody(denied))
	})
}

func TestListFilter(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.cc.addApp("app-b2", "space-b")
		h.expect(h.do("POST", v1Path, adminToken, v1Body(
			v1Policy("app-a1", "app-a2", "tcp", 1, 1),
			v1Policy("app-a1", "app-b1", "tcp", 2, 2),
			v1Policy("app-b1", "app-b2", "tcp", 3, 3),
			v1Policy("app-a2", "ghost", "tcp", 4, 4),
		)), 200, "{}")
		list := func(token, query string) string {
			r := h.do("GET", v1Path+query, token, "")
			if r.code != 200 {
				t.Fatalf("list = %d %s", r.code, r.body)
			}
			return r.body
		}
		if got := list(aliceWrite, ""); got != `{"total_policies":1,"policies":[{"source":{"id":"app-a1"},"destination":{"id":"app-a2","protocol":"tcp","ports":{"start":1,"end":1}}}]}` {
			t.Errorf("alice sees %s", got)
		}
		if got := list(bobWrite, "?id=app-b1"); got != `{"total_policies":1,"policies":[{"source":{"id":"app-b1"},"destination":{"id":"app-b2","protocol":"tcp","ports":{"start":3,"end":3}}}]}` {
			t.Errorf("bob sees %s", got)
		}
		if got := list(adminToken, ""); !strings.HasPrefix(got, `{"total_policies":4,`) {
			t.Errorf("admin sees %s", got)
		}
		// User spaces are paged through next_url.
		h.cc.mu.Lock()
		h.cc.pageSize = 1
		h.cc.mu.Unlock()
		h.cc.addSpace("space-b", "prod", "org-1", "uid-bob", "uid-alice")
		h.cc.addSpace("space-c", "other", "org-1", "uid-alice")
		if got := list(aliceWrite, ""); !strings.HasPrefix(got, `{"total_policies":3,`) {
			t.Errorf("alice with two spaces sees %s", got)
		}
		var pages []string
		for _, r := range h.cc.recorded() {
			if strings.Contains(r, "/v2/users/uid-alice/spaces") {
				pages = append(pages, r)
			}
		}
		if !slices.Contains(pages, "GET /v2/users/uid-alice/spaces?results-per-page=100") ||
			!slices.Contains(pages, "GET /v2/users/uid-alice/spaces?order-direction=asc&page=3&results-per-page=1") {
			t.Errorf("user space pages: %v", pages)
		}
	})
}

func TestSelfService(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore, func(s *setup) { s.selfService = true })
		body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1))
		// No network scope needed: space developers manage their own apps.
		h.expect(h.do("POST", v1Path, alicePlain, body), 200, "{}")
		h.expect(h.do("GET", v1Path, alicePlain, ""), 200, `{"total_policies":1,"policies":[{"source":{"id":"app-a1"},"destination":{"id":"app-a2","protocol":"tcp","ports":{"start":1,"end":1}}}]}`)
		h.expect(h.do("POST", v1Path+"/delete", alicePlain, body), 200, "{}")
		// Still only in their spaces, and admin routes still need network.admin.
		h.expect(h.do("POST", v1Path, alicePlain, v1Body(v1Policy("app-b1", "app-a2", "tcp", 1, 1))), 403, errBody(denied))
		h.expect(h.do("GET", "/networking/v1/external/tags", alicePlain, ""), 403,
			errBody("provided scopes [openid cloud_controller.read] do not include allowed scopes [network.admin]"))
		// And the token must still be valid.
		h.expect(h.do("GET", v1Path, expired, ""), 401, errBody("failed to verify token with uaa"))
	})
}

func TestCleanupRoute(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.expect(h.do("POST", v1Path+"/cleanup", adminToken, ""), 200, `{"total_policies":0,"policies":[]}`)
		h.expect(h.do("POST", v1Path, adminToken, v1Body(
			v1Policy("app-a1", "app-a2", "tcp", 1, 1),
			v1Policy("app-a1", "dead", "tcp", 3333, 3333),
			v1Policy("dead", "dead2", "udp", 5, 9),
		)), 200, "{}")
		// v1 shape whatever the version; the policy naming two dead apps once.
		h.expect(h.do("POST", v0Path+"/cleanup", adminToken, ""), 200, `{"total_policies":2,"policies":[`+
			`{"source":{"id":"app-a1"},"destination":{"id":"dead","protocol":"tcp","ports":{"start":3333,"end":3333}}},`+
			`{"source":{"id":"dead"},"destination":{"id":"dead2","protocol":"udp","ports":{"start":5,"end":9}}}]}`)
		if diff := cmp.Diff([]policy.Policy{policy.NewPolicy("app-a1", "app-a2", "tcp", 1, 1)}, h.stored()); diff != "" {
			t.Fatalf("stored (-want +got):\n%s", diff)
		}
		h.expect(h.do("POST", v1Path+"/cleanup", aliceWrite, ""), 403,
			errBody("provided scopes [openid network.write] do not include allowed scopes [network.admin]"))
		h.cc.down.Store(true)
		h.expect(h.do("POST", v1Path+"/cleanup", adminToken, ""), 500, errBody("policies cleanup failed"))
		if h.counter("CleanupRequestCount") != 4 {
			t.Errorf("CleanupRequestCount = %d", h.counter("CleanupRequestCount"))
		}
	})
}

func TestFileAuth(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		path := filepath.Join(t.TempDir(), "tokens.json")
		if err := os.WriteFile(path, []byte(`{
			"lab-admin-token": {"user_name": "admin", "scopes": ["network.admin"]},
			"lab-dev-token":   {"user_name": "dev", "scopes": ["network.write"], "app_guids": ["a", "b"]},
			"lab-nobody":      {"user_name": "nobody", "scopes": ["openid"]}
		}`), 0o600); err != nil {
			t.Fatal(err)
		}
		fa, err := auth.LoadTokensFile(path)
		if err != nil {
			t.Fatal(err)
		}
		h := newHarness(t, withStore, func(s *setup) { s.fileAuth = fa })
		h.expect(h.do("GET", "/networking/v1/external/whoami", "lab-admin-token", ""), 200, `{"subject":"admin"}`)
		h.expect(h.do("GET", "/networking/v1/external/whoami", "lab-dev-token", ""), 403,
			errBody("provided scopes [network.write] do not include allowed scopes [network.admin]"))
		h.expect(h.do("GET", v1Path, "not-a-token", ""), 401, errBody("failed to verify token with uaa"))
		h.expect(h.do("GET", v1Path, "lab-nobody", ""), 403,
			errBody("provided scopes [openid] do not include allowed scopes [network.admin network.write]"))

		h.expect(h.do("POST", v1Path, "lab-dev-token", v1Body(v1Policy("a", "b", "tcp", 1, 1))), 200, "{}")
		h.expect(h.do("POST", v1Path, "lab-dev-token", v1Body(v1Policy("a", "c", "tcp", 1, 1))), 403, errBody(denied))
		h.expect(h.do("POST", v1Path, "lab-admin-token", v1Body(v1Policy("a", "c", "tcp", 2, 2))), 200, "{}")
		h.expect(h.do("GET", v1Path, "lab-dev-token", ""), 200, `{"total_policies":1,"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}]}`)
		h.expect(h.do("POST", v1Path+"/delete", "lab-dev-token", v1Body(v1Policy("a", "c", "tcp", 2, 2))), 403, errBody(denied))
		// No Cloud Controller: cleanup deletes nothing.
		h.expect(h.do("POST", v1Path+"/cleanup", "lab-admin-token", ""), 200, `{"total_policies":0,"policies":[]}`)
		if len(h.stored()) != 2 {
			t.Error("cleanup deleted policies without a Cloud Controller")
		}
		if h.uaa.checkRequests.Load() != 0 || len(h.cc.recorded()) != 0 {
			t.Error("file auth consulted UAA or CC")
		}
	})
}
