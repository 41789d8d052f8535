package cfplugin_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/netman-release/netman/src/policy"
)

// fakeCloud is one API endpoint as the cf CLI sees it: Cloud Controller's
// /v3/apps and, behind the router, policy-server's external API. It keeps
// apps and policies, validates policy bodies with the server's own mappers,
// refuses any other token, and records every request.
type fakeCloud struct {
	t     testing.TB
	srv   *httptest.Server
	token string // the Authorization header accepted

	mu       sync.Mutex
	apps     []fakeApp
	policies []policy.Policy
	requests []recorded
	pageSize int    // apps per page of a space listing (pagination)
	failCC   int    // when set, /v3/apps answers this status
	failPS   int    // when set, the policy server answers this status
	failMsg  string // and this error
}

type fakeApp struct{ guid, name, space string }

type recorded struct {
	Method, Path, Query, Body, Authorization string
}

func newFakeCloud(t testing.TB, token string) *fakeCloud {
	f := &fakeCloud{t: t, token: token, pageSize: 2}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are tested
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCloud) URL() string { return f.srv.URL }

func (f *fakeCloud) addApp(guid, name, space string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps = append(f.apps, fakeApp{guid, name, space})
}

func (f *fakeCloud) addPolicy(p policy.Policy) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.policies = append(f.policies, p)
}

func (f *fakeCloud) stored() []policy.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.policies)
}

func (f *fakeCloud) recorded() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

// policyRequests are the recorded requests to the policy server.
func (f *fakeCloud) policyRequests() []recorded {
	var out []recorded
	for _, r := range f.recorded() {
		if strings.HasPrefix(r.Path, "/networking/") {
			out = append(out, r)
		}
	}
	return out
}

func (f *fakeCloud) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests = append(f.requests, recorded{r.Method, r.URL.Path, r.URL.RawQuery, string(body), r.Header.Get("Authorization")})

	switch {
	case r.URL.Path == "/v3/apps" && r.Method == http.MethodGet:
		if r.Header.Get("Authorization") != f.token {
			writeJSON(w, 401, `{"errors":[{"detail":"Invalid Auth Token","title":"CF-InvalidAuthToken","code":1000}]}`)
			return
		}
		if f.failCC != 0 {
			writeJSON(w, f.failCC, `{"errors":[{"detail":"An unknown error occurred.","title":"UnknownError","code":10001}]}`)
			return
		}
		f.listApps(w, r.URL.Query())
	case strings.HasPrefix(r.URL.Path, "/networking/"):
		if r.Header.Get("Authorization") != f.token {
			writeJSON(w, 401, `{"error": "failed to verify token with uaa"}`)
			return
		}
		if f.failPS != 0 {
			writeJSON(w, f.failPS, fmt.Sprintf(`{"error": %q}`, f.failMsg))
			return
		}
		f.policyAPI(w, r, body)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeCloud) listApps(w http.ResponseWriter, q url.Values) {
	spaces := strings.Split(q.Get("space_guids"), ",")
	var names []string
	if q.Has("names") {
		names = strings.Split(q.Get("names"), ",")
	}
	var match []fakeApp
	for _, a := range f.apps {
		if slices.Contains(spaces, a.space) && (names == nil || slices.Contains(names, a.name)) {
			match = append(match, a)
		}
	}
	page, _ := strconv.Atoi(q.Get("page"))
	page = max(page, 1)
	from := min((page-1)*f.pageSize, len(match))
	to := min(from+f.pageSize, len(match))
	type res struct {
		GUID string `json:"guid"`
		Name string `json:"name"`
	}
	out := struct {
		Pagination struct {
			TotalResults int `json:"total_results"`
			Next         any `json:"next"`
		} `json:"pagination"`
		Resources []res `json:"resources"`
	}{Resources: []res{}}
	out.Pagination.TotalResults = len(match)
	for _, a := range match[from:to] {
		out.Resources = append(out.Resources, res{a.guid, a.name})
	}
	if to < len(match) {
		next := url.Values{}
		for k, v := range q {
			next[k] = v
		}
		next.Set("page", strconv.Itoa(page+1))
		// An absolute URL on another host: the plugin must only take its
		// path and query.
		out.Pagination.Next = map[string]string{"href": "https://api.elsewhere.invalid/v3/apps?" + next.Encode()}
	}
	b, _ := json.Marshal(out)
	writeJSON(w, 200, string(b))
}

func (f *fakeCloud) policyAPI(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/networking/"), "/")
	if len(parts) < 3 || parts[1] != "external" || parts[2] != "policies" {
		http.NotFound(w, r)
		return
	}
	version := parts[0]
	mapper := policy.MapV1
	if version == "v0" {
		mapper = policy.MapV0
	}
	switch {
	case r.Method == http.MethodPost && len(parts) == 3:
		ps, err := mapper(body)
		if err != nil {
			writeJSON(w, 400, fmt.Sprintf(`{"error": %q}`, "mapper: "+err.Error()))
			return
		}
		for _, p := range ps {
			if !slices.Contains(f.policies, p) {
				f.policies = append(f.policies, p)
			}
		}
		writeJSON(w, 200, "{}")
	case r.Method == http.MethodPost && len(parts) == 4 && parts[3] == "delete":
		ps, err := mapper(body)
		if err != nil {
			writeJSON(w, 400, fmt.Sprintf(`{"error": %q}`, "mapper: "+err.Error()))
			return
		}
		f.policies = slices.DeleteFunc(f.policies, func(p policy.Policy) bool { return slices.Contains(ps, p) })
		writeJSON(w, 200, "{}")
	case r.Method == http.MethodGet && len(parts) == 3:
		out := f.policies
		if r.URL.Query().Has("id") {
			ids := strings.Split(r.URL.Query().Get("id"), ",")
			out = nil
			for _, p := range f.policies {
				if slices.Contains(ids, p.Source.ID) || slices.Contains(ids, p.Destination.ID) {
					out = append(out, p)
				}
			}
		}
		if version == "v0" {
			writeJSON(w, 200, string(policy.MarshalV0(out)))
			return
		}
		writeJSON(w, 200, string(policy.MarshalV1(out)))
	default:
		http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
	}
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}
