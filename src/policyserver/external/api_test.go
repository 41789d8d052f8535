package external_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
)

func TestUptime(t *testing.T) {
	h := newHarness(t)
	h.fake.failOn("CheckDatabase", errDB) // uptime never touches the database
	for _, path := range []string{"/", "/networking"} {
		r := h.do("GET", path, "", "")
		if r.code != 200 || !regexp.MustCompile(`^Network policy server, up for 1h30m\d+(\.\d+)?.?s\n$`).MatchString(r.body) {
			t.Errorf("GET %s = %d %q", path, r.code, r.body)
		}
	}
	if n, _ := h.sender.Registry().Counter("UptimeRequestCount"); n != 2 {
		t.Errorf("UptimeRequestCount = %d, want 2", n)
	}
	if _, ok := h.sender.Registry().Value("UptimeRequestTime"); !ok {
		t.Error("no UptimeRequestTime")
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t)
	h.expect(h.do("GET", "/health", "", ""), 200, "")
	h.fake.failOn("CheckDatabase", errDB)
	h.expect(h.do("GET", "/health", "", ""), 500, errBody("check database failed"))
	if h.counter("http_error") != 1 || h.counter("HealthRequestCount") != 2 {
		t.Errorf("http_error = %d, HealthRequestCount = %d", h.counter("http_error"), h.counter("HealthRequestCount"))
	}
}

func TestRouting(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		method, path string
		code         int
		body, allow  string
	}{
		{"GET", "/nope", 404, "404 page not found\n", ""},
		{"GET", "/networking/", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/external/policies/", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/v1/external/policies", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/external/destinations", 404, "404 page not found\n", ""},
		{"PUT", v1Path, 405, "Method Not Allowed\n", "POST, GET, OPTIONS"},
		{"HEAD", "/health", 405, "", "GET, OPTIONS"},
		{"DELETE", "/", 405, "Method Not Allowed\n", "GET, OPTIONS"},
		{"GET", "/networking/v1/external/policies/delete", 405, "Method Not Allowed\n", "POST, OPTIONS"},
	} {
		r := h.do(tt.method, tt.path, adminToken, "")
		if r.code != tt.code || (tt.method != "HEAD" && r.body != tt.body) || r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d %q Allow %q, want %d %q Allow %q", tt.method, tt.path, r.code, r.body, r.header.Get("Allow"), tt.code, tt.body, tt.allow)
		}
		if r.header.Get("X-Frame-Options") != "" || r.header.Get("X-XSS-Protection") != "" {
			t.Errorf("%s %s: security headers on a router error: %v", tt.method, tt.path, r.header)
		}
	}
}

func TestVersionCheckPrecedesAuth(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct{ method, path, version string }{
		{"GET", "/networking/v2/external/policies", "v2"},
		{"POST", "/networking/v3/external/policies", "v3"},
		{"POST", "/networking/V1/external/policies/delete", "V1"},
		{"POST", "/networking/x/external/policies/cleanup", "x"},
		{"GET", "/networking/v1.0/external/tags", "v1.0"},
		{"GET", "/networking//external/whoami", ""},
	} {
		r := h.do(tt.method, tt.path, "", "")
		if r.code != 406 || r.body != errBody("api version '"+tt.version+"' not supported") {
			t.Errorf("%s %s = %d %q", tt.method, tt.path, r.code, r.body)
		}
	}
	if h.uaa.checkRequests.Load() != 0 {
		t.Error("UAA consulted before the version check")
	}
}

func TestSecurityHeaders(t *testing.T) {
	for _, tls := range []bool{false, true} {
		h := newHarness(t, func(s *setup) { s.tls = tls })
		for _, r := range []response{
			h.do("GET", "/", "", ""),
			h.do("GET", "/health", "", ""),
			h.do("GET", v1Path, "", ""),                         // 401
			h.do("GET", "/networking/v9/external/tags", "", ""), // 406
			h.do("GET", v1Path, adminToken, ""),
			h.do("OPTIONS", v1Path, "", ""),
		} {
			want := map[string]string{
				"X-Frame-Options":         "deny",
				"Content-Security-Policy": "frame-ancestors 'none'",
				"X-Xss-Protection":        "1; mode=block",
				"X-Content-Type-Options":  "nosniff",
			}
			if tls {
				want["Strict-Transport-Security"] = "max-age=31536000"
			}
			for k, v := range want {
				if got := r.header.Get(k); got != v {
					t.Errorf("tls=%v: %s = %q, want %q (response %d %q)", tls, k, got, v, r.code, r.body)
				}
			}
			if !tls && r.header.Get("Strict-Transport-Security") != "" {
				t.Error("HSTS without TLS")
			}
		}
	}
}

func TestCORS(t *testing.T) {
	h := newHarness(t, func(s *setup) { s.cors = []string{"https://a.example", "https://b.example"} })
	for _, tt := range []struct{ path, methods string }{
		{v1Path, "POST,GET,OPTIONS"},
		{"/", "GET,OPTIONS"},
		{"/networking", "GET,OPTIONS"},
		{"/networking/v1/external/policies/delete", "POST,OPTIONS"},
		{"/networking/anything/external/tags", "GET,OPTIONS"},
		{"/networking/v1.0/external/tags", ""}, // routed, but upstream's \w+ does not match
	} {
		r := h.do("OPTIONS", tt.path, "", "", "Origin", "https://b.example")
		h.expect(r, 200, "")
		if got := r.header.Get("Access-Control-Allow-Methods"); got != tt.methods {
			t.Errorf("OPTIONS %s methods = %q, want %q", tt.path, got, tt.methods)
		}
		if r.header.Get("Access-Control-Allow-Headers") != "authorization" || r.header.Get("Access-Control-Allow-Origin") != "https://b.example" {
			t.Errorf("OPTIONS %s headers: %v", tt.path, r.header)
		}
	}
	if h.uaa.checkRequests.Load() != 0 || h.counter("PoliciesIndexRequestCount") != 0 {
		t.Error("preflight was authenticated or counted")
	}
	r := h.do("GET", "/", "", "", "Origin", "https://evil.example")
	if r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Methods") != "" {
		t.Errorf("foreign origin allowed: %v", r.header)
	}
	r = h.do("GET", "/", "", "", "Origin", "https://a.example")
	if r.header.Get("Access-Control-Allow-Origin") != "https://a.example" {
		t.Errorf("allowed origin missing: %v", r.header)
	}

	wild := newHarness(t, func(s *setup) { s.cors = []string{"*"} })
	if got := wild.do("GET", "/", "", "", "Origin", "https://x.example").header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("wildcard origin = %q", got)
	}
	if got := wild.do("GET", "/", "", "").header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("origin header without an Origin = %q", got)
	}
}

func TestRequestID(t *testing.T) {
	h := newHarness(t)
	uuidRE := `[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}`
	r := h.do("GET", v1Path, "", "") // an error response carries it too
	if !regexp.MustCompile("^" + uuidRE + "$").MatchString(r.header.Get("X-Vcap-Request-Id")) {
		t.Errorf("request id = %q", r.header.Get("X-Vcap-Request-Id"))
	}
	r = h.do("GET", "/", "", "", "X-VCAP-Request-ID", "gorouter-id")
	if !regexp.MustCompile("^gorouter-id::" + uuidRE + "$").MatchString(r.header.Get("X-Vcap-Request-Id")) {
		t.Errorf("chained request id = %q", r.header.Get("X-Vcap-Request-Id"))
	}
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct {
		name, header string
		code         int
		body         string
	}{
		{"no header", "", 401, errBody("missing authorization header")},
		{"unknown token", "Bearer nope", 401, errBody("failed to verify token with uaa")},
		{"forged jwt", "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiIsInNjb3BlIjpbIm5ldHdvcmsuYWRtaW4iXX0.c2lnbmF0dXJl", 401, errBody("failed to verify token with uaa")},
		{"expired", "Bearer " + expired, 401, errBody("failed to verify token with uaa")},
		{"empty bearer", "Bearer ", 401, errBody("failed to verify token with uaa")},
		{"lowercase bearer", "bearer " + adminToken, 200, `{"subject":"admin"}`},
		{"bare token", adminToken, 200, `{"subject":"admin"}`},
		{"no admin scope", "Bearer " + aliceWrite, 403, errBody("provided scopes [openid network.write] do not include allowed scopes [network.admin]")},
		{"client token", "Bearer " + clientAdmin, 200, `{"subject":"ps-client"}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var hdrs []string
			if tt.header != "" {
				hdrs = []string{"Authorization", tt.header}
			}
			r := h.do("GET", "/networking/v1/external/whoami", "", "", hdrs...)
			h.expect(r, tt.code, tt.body)
			if (r.code == 401) != (r.header.Get("WWW-Authenticate") == "Bearer") {
				t.Errorf("WWW-Authenticate = %q on %d", r.header.Get("WWW-Authenticate"), r.code)
			}
		})
	}
	// Only the first Authorization header counts.
	h.expect(h.do("GET", "/networking/v0/external/whoami", "", "", "Authorization", "Bearer "+aliceWrite, "Authorization", "Bearer "+adminToken),
		403, errBody("provided scopes [openid network.write] do not include allowed scopes [network.admin]"))
	if got := h.uaa.lastCheckToken.Load(); got != aliceWrite {
		t.Errorf("UAA was asked about %v", got)
	}
}

func TestWriteRoutesScopes(t *testing.T) {
	h := newHarness(t)
	want := errBody("provided scopes [openid cloud_controller.read] do not include allowed scopes [network.admin network.write]")
	h.expect(h.do("GET", v1Path, alicePlain, ""), 403, want)
	h.expect(h.do("POST", v1Path, alicePlain, v1Body(v1Policy("app-a1", "app-a2", "tcp", 80, 80))), 403, want)
	h.expect(h.do("POST", v1Path+"/delete", alicePlain, v1Body(v1Policy("app-a1", "app-a2", "tcp", 80, 80))), 403, want)
	h.expect(h.do("GET", v1Path, aliceWrite, ""), 200, `{"total_policies":0,"policies":[]}`)
}

func TestUAAFailuresAre401(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		h := newHarness(t)
		h.uaa.down.Store(true)
		h.expect(h.do("GET", v1Path, adminToken, ""), 401, errBody("failed to verify token with uaa"))
	})
	t.Run("slow", func(t *testing.T) {
		h := newHarness(t, func(s *setup) { s.timeout = 100 * time.Millisecond })
		h.uaa.delay.Store(int64(time.Second))
		start := time.Now()
		h.expect(h.do("GET", v1Path, adminToken, ""), 401, errBody("failed to verify token with uaa"))
		if time.Since(start) > 800*time.Millisecond {
			t.Errorf("took %v: the UAA call was not bounded", time.Since(start))
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		h := newHarness(t)
		h.uaa.Close()
		h.expect(h.do("GET", v1Path, adminToken, ""), 401, errBody("failed to verify token with uaa"))
	})
	t.Run("wrong client secret", func(t *testing.T) {
		h := newHarness(t)
		h.uaa.secret = "rotated"
		h.expect(h.do("GET", v1Path, adminToken, ""), 401, errBody("failed to verify token with uaa"))
	})
}

func TestWhoAmI(t *testing.T) {
	h := newHarness(t)
	h.expect(h.do("GET", "/networking/v1/external/whoami", adminToken, ""), 200, `{"subject":"admin"}`)
	h.expect(h.do("GET", "/networking/v0/external/whoami", clientAdmin, ""), 200, `{"subject":"ps-client"}`)
	if h.counter("WhoAmIRequestCount") != 2 {
		t.Error("WhoAmIRequestCount")
	}
}

func TestCreateAndListAsAdmin(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.expect(h.do("POST", v1Path, adminToken, v1Body(
			v1Policy("app-a1", "app-b1", "tcp", 8080, 8080),
			v1Policy("app-a1", "app-b1", "udp", 5000, 6000),
		)), 200, "{}")
		h.expect(h.do("POST", v0Path, adminToken, v1Body(v0Policy("app-b1", "app-a2", "tcp", 9090))), 200, "{}")
		// Idempotent.
		h.expect(h.do("POST", v0Path, adminToken, v1Body(v0Policy("app-b1", "app-a2", "tcp", 9090))), 200, "{}")

		want := []policy.Policy{
			policy.NewPolicy("app-a1", "app-b1", "tcp", 8080, 8080),
			policy.NewPolicy("app-a1", "app-b1", "udp", 5000, 6000),
			policy.NewPolicy("app-b1", "app-a2", "tcp", 9090, 9090),
		}
		if diff := cmp.Diff(want, h.stored()); diff != "" {
			t.Fatalf("stored (-want +got):\n%s", diff)
		}
		// Tags are stripped; v0 drops the range policy and does not count it.
		h.expect(h.do("GET", v1Path, adminToken, ""), 200, `{"total_policies":3,"policies":[`+
			`{"source":{"id":"app-a1"},"destination":{"id":"app-b1","protocol":"tcp","ports":{"start":8080,"end":8080}}},`+
			`{"source":{"id":"app-a1"},"destination":{"id":"app-b1","protocol":"udp","ports":{"start":5000,"end":6000}}},`+
			`{"source":{"id":"app-b1"},"destination":{"id":"app-a2","protocol":"tcp","ports":{"start":9090,"end":9090}}}]}`)
		h.expect(h.do("GET", v0Path, adminToken, ""), 200, `{"total_policies":2,"policies":[`+
			`{"source":{"id":"app-a1"},"destination":{"id":"app-b1","protocol":"tcp","port":8080}},`+
			`{"source":{"id":"app-b1"},"destination":{"id":"app-a2","protocol":"tcp","port":9090}}]}`)
		if h.counter("CreatePoliciesRequestCount") != 3 || h.counter("PoliciesIndexRequestCount") != 2 {
			t.Error("request counts")
		}
		if len(h.cc.recorded()) != 0 || h.uaa.tokenRequests.Load() != 0 {
			t.Errorf("admin requests consulted CC: %v", h.cc.recorded())
		}
	})
}

func TestListQuery(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.expect(h.do("POST", v1Path, adminToken, v1Body(
			v1Policy("a", "b", "tcp", 1, 1),
			v1Policy("b", "c", "tcp", 2, 2),
			v1Policy("c", "a", "tcp", 3, 3),
			v1Policy("d", "d", "tcp", 4, 4),
		)), 200, "{}")
		ports := func(query string) string {
			r := h.do("GET", v1Path+query, adminToken, "")
			if r.code != 200 {
				t.Fatalf("GET %s = %d %s", query, r.code, r.body)
			}
			var out []string
			for _, m := range regexp.MustCompile(`"start":(\d+)`).FindAllStringSubmatch(r.body, -1) {
				out = append(out, m[1])
			}
			slices.Sort(out) // database order: unspecified
			return strings.Join(out, ",")
		}
		for _, tt := range []struct{ query, want string }{
			{"", "1,2,3,4"},
			{"?id=a", "1,3"},
			{"?id=a,d", "1,3,4"},
			{"?id=a&source_id=d", "1,3"}, // id takes precedence
			{"?id=b&id=d", "1,2"},        // only the first occurrence
			{"?id=", ""},
			{"?source_id=b", "2"},
			{"?dest_id=a", "3"},
			{"?source_id=a,b&dest_id=c", "2"},
			{"?source_id=a&dest_id=c", ""},
			{"?source_id=&dest_id=a", ""},
			{"?unknown=x", "1,2,3,4"},
		} {
			if got := ports(tt.query); got != tt.want {
				t.Errorf("GET ?%s selects ports %q, want %q", tt.query, got, tt.want)
			}
		}
	})
}

func TestCreateValidation(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct{ path, body, msg string }{
		{v1Path, ``, "mapper: unmarshal json: unexpected end of JSON input"},
		{v1Path, `{"policies":`, "mapper: unmarshal json: unexpected end of JSON input"},
		{v1Path, `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":"x","end":1}}}]}`,
			"mapper: unmarshal json: json: cannot unmarshal string into Go struct field Ports.policies.destination.ports.start of type int"},
		{v1Path, `{"policies":[]}`, "mapper: validate policies: missing policies"},
		{v1Path, v1Body(`{"destination":{"id":"b"}}`), "mapper: validate policies: missing source id"},
		{v1Path, v1Body(`{"source":{"id":"a"}}`), "mapper: validate policies: missing destination id"},
		{v1Path, v1Body(v1Policy("a", "b", "icmp", 1, 1)), "mapper: validate policies: invalid destination protocol, specify either udp or tcp"},
		{v1Path, v1Body(v1Policy("a", "b", "tcp", 10, 9)), "mapper: validate policies: invalid port range 10-9, start must be less than or equal to end"},
		{v1Path, v1Body(v1Policy("a", "b", "tcp", -1, 9)), "mapper: validate policies: invalid start port -1, must be in range 1-65535"},
		{v1Path, v1Body(v1Policy("a", "b", "tcp", 0, 9)), "mapper: validate policies: missing start port"},
		{v1Path, v1Body(v1Policy("a", "b", "tcp", 1, 65536)), "mapper: validate policies: invalid end port 65536, must be in range 1-65535"},
		{v1Path, v1Body(`{"source":{"id":"a","tag":"0001"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1,"end":1}}}`), "mapper: validate policies: tags may not be specified"},
		{v1Path, v1Body(v0Policy("a", "b", "tcp", 80)), "mapper: validate policies: missing start port"},
		{v0Path, v1Body(v1Policy("a", "b", "tcp", 80, 80)), "mapper: validate policies: missing port"},
		{v0Path, v1Body(v0Policy("a", "b", "tcp", -2)), "mapper: validate policies: invalid port -2, must be in range 1-65535"},
		{v0Path, v1Body(v0Policy("a", "b", "tcp", 70000)), "mapper: validate policies: invalid port 70000, must be in range 1-65535"},
		{v0Path, v1Body(v0Policy("a", "b", "udp", 0)), "mapper: validate policies: missing port"},
		{v0Path, v1Body(v0Policy("a", "b", "all", 1)), "mapper: validate policies: invalid destination protocol, specify either udp or tcp"},
		{v0Path, `{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":1,"tag":"x"}}]}`, "mapper: validate policies: tags may not be specified"},
		// A quote in the decoder's text stays valid JSON (upstream's body did not).
		{v1Path, `{"policies":[{"source":{"id":"a"}"`, `mapper: unmarshal json: invalid character '\"' after object key:value pair`},
	} {
		for _, route := range []string{tt.path, tt.path + "/delete"} {
			r := h.do("POST", route, adminToken, tt.body)
			h.expect(r, 400, errBody(tt.msg))
		}
	}
	if len(h.stored()) != 0 {
		t.Error("an invalid request stored something")
	}
	if h.counter("http_error") == 0 {
		t.Error("no http_error counted")
	}
}

func TestBodyLimit(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		// 10 MiB + 1 of valid JSON whitespace: only the size is wrong.
		big := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1)) + strings.Repeat(" ", 10<<20)
		h.expect(h.do("POST", v1Path, adminToken, big), 400, errBody("failed reading request body"))
		h.expect(h.do("POST", v1Path+"/delete", adminToken, big), 400, errBody("invalid request body"))
		// Exactly at the limit is fine.
		body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 1, 1))
		h.expect(h.do("POST", v1Path, adminToken, body+strings.Repeat(" ", 10<<20-len(body))), 200, "{}")
	})
}

func TestHostileBodiesAre400(t *testing.T) {
	h := newHarness(t)
	for _, body := range []string{
		strings.Repeat("[", 100000),
		`{"policies":` + strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000) + `}`,
		"\x00\xff\xfe",
		`{"policies":[{"source":{"id":"` + strings.Repeat("\\u0000", 1000) + `"}}]}`,
		`{"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","ports":{"start":1e999,"end":1}}}]}`,
		`{"policies":{"0":{}}}`,
		`"just a string"`,
		`null`,
	} {
		for _, p := range []string{v1Path, v0Path} {
			if r := h.do("POST", p, adminToken, body); r.code != 400 || !strings.HasPrefix(r.body, `{"error": "mapper: `) {
				t.Errorf("POST %s %.40q = %d %.200s", p, body, r.code, r.body)
			}
		}
	}
}

func TestDelete(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.expect(h.do("POST", v1Path, adminToken, v1Body(v1Policy("app-a1", "app-b1", "tcp", 80, 80), v1Policy("app-a1", "app-b1", "tcp", 81, 90))), 200, "{}")
		h.expect(h.do("POST", v0Path+"/delete", adminToken, v1Body(v0Policy("app-a1", "app-b1", "tcp", 80))), 200, "{}")
		// Deleting what does not exist is a silent success.
		h.expect(h.do("POST", v1Path+"/delete", adminToken, v1Body(v1Policy("x", "y", "udp", 1, 2))), 200, "{}")
		if diff := cmp.Diff([]policy.Policy{policy.NewPolicy("app-a1", "app-b1", "tcp", 81, 90)}, h.stored()); diff != "" {
			t.Fatalf("stored (-want +got):\n%s", diff)
		}
		if got := h.counter("DeletePoliciesRequestCount"); got != 2 {
			t.Errorf("DeletePoliciesRequestCount = %d, want 2", got)
		}
	})
}

func TestStoreFailures(t *testing.T) {
	h := newHarness(t)
	body := v1Body(v1Policy("app-a1", "app-a2", "tcp", 80, 80))
	h.fake.failOn("Create", errDB)
	h.expect(h.do("POST", v1Path, adminToken, body), 500, errBody("database create failed"))
	h.fake.failOn("Delete", errDB)
	h.expect(h.do("POST", v1Path+"/delete", adminToken, body), 500, errBody("database delete failed"))
	h.fake.failOn("All", errDB)
	h.expect(h.do("GET", v1Path, adminToken, ""), 500, errBody("database read failed"))
	h.fake.failOn("ByGuids", errDB)
	h.expect(h.do("GET", v1Path+"?id=x", adminToken, ""), 500, errBody("database read failed"))
	h.expect(h.do("POST", v1Path, aliceWrite, body), 500, errBody("check quota failed"))
	h.fake.failOn("Tags", errDB)
	h.expect(h.do("GET", "/networking/v1/external/tags", adminToken, ""), 500, errBody("database read failed"))
	h.expect(h.do("POST", v1Path+"/cleanup", adminToken, ""), 500, errBody("policies cleanup failed"))
	if got := h.counter("http_error"); got != 7 {
		t.Errorf("http_error = %d, want 7", got)
	}
}

func TestTags(t *testing.T) {
	onEachStore(t, func(t *testing.T, withStore func(*setup)) {
		h := newHarness(t, withStore)
		h.expect(h.do("GET", "/networking/v1/external/tags", adminToken, ""), 200, `{"tags":[]}`)
		h.expect(h.do("POST", v1Path, adminToken, v1Body(v1Policy("app-a1", "app-b1", "tcp", 80, 80))), 200, "{}")
		h.expect(h.do("GET", "/networking/v0/external/tags", adminToken, ""), 200,
			`{"tags":[{"id":"app-a1","tag":"0001","type":"app"},{"id":"app-b1","tag":"0002","type":"app"}]}`)
		h.expect(h.do("GET", "/networking/v1/external/tags", aliceWrite, ""), 403,
			errBody("provided scopes [openid network.write] do not include allowed scopes [network.admin]"))
	})
}
