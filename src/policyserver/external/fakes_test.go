package external_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// ---- store ----

// fakeStore behaves like the SQL store: creates are idempotent, policies
// come back in insertion (database) order with tags, an app's tag is the
// lowest free group id and is freed when no policy names the app any more.
// Each operation can be made to fail.
type fakeStore struct {
	mu       sync.Mutex
	policies []policy.Policy // tags blank; filled from groups on read
	groups   map[string]int
	fail     map[string]error // "Create", "Delete", "All", "ByGuids", "Tags", "CheckDatabase"
}

func newFakeStore() *fakeStore {
	return &fakeStore{groups: map[string]int{}, fail: map[string]error{}}
}

func (s *fakeStore) failOn(op string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[op] = err
}

func samePolicy(a, b policy.Policy) bool {
	return a.Source.ID == b.Source.ID && a.Destination.ID == b.Destination.ID && a.Destination.Protocol == b.Destination.Protocol &&
		a.Destination.Ports == b.Destination.Ports
}

func (s *fakeStore) assign(guid string) {
	if _, ok := s.groups[guid]; ok {
		return
	}
	used := map[int]bool{}
	for _, id := range s.groups {
		used[id] = true
	}
	id := 1
	for used[id] {
		id++
	}
	s.groups[guid] = id
}

func (s *fakeStore) Create(_ context.Context, ps []policy.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["Create"]; err != nil {
		return err
	}
	for _, p := range ps {
		s.assign(p.Source.ID)
		s.assign(p.Destination.ID)
		if !slices.ContainsFunc(s.policies, func(q policy.Policy) bool { return samePolicy(p, q) }) {
			p.Source.Tag, p.Destination.Tag = "", ""
			s.policies = append(s.policies, p)
		}
	}
	return nil
}

func (s *fakeStore) Delete(_ context.Context, ps []policy.Policy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["Delete"]; err != nil {
		return err
	}
	for _, p := range ps {
		s.policies = slices.DeleteFunc(s.policies, func(q policy.Policy) bool { return samePolicy(p, q) })
	}
	for guid := range s.groups {
		if !slices.ContainsFunc(s.policies, func(q policy.Policy) bool { return q.Source.ID == guid || q.Destination.ID == guid }) {
			delete(s.groups, guid)
		}
	}
	return nil
}

func (s *fakeStore) withTags(ps []policy.Policy) []policy.Policy {
	out := []policy.Policy{}
	for _, p := range ps {
		p.Source.Tag = policy.FormatTag(s.groups[p.Source.ID], 2)
		p.Destination.Tag = policy.FormatTag(s.groups[p.Destination.ID], 2)
		out = append(out, p)
	}
	return out
}

func (s *fakeStore) All(context.Context) ([]policy.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["All"]; err != nil {
		return nil, err
	}
	return s.withTags(s.policies), nil
}

func (s *fakeStore) ByGuids(_ context.Context, src, dst []string, and bool) ([]policy.Policy, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["ByGuids"]; err != nil {
		return nil, err
	}
	var out []policy.Policy
	for _, p := range s.policies {
		inSrc, inDst := slices.Contains(src, p.Source.ID), slices.Contains(dst, p.Destination.ID)
		var keep bool
		switch {
		case len(src) == 0 && len(dst) == 0:
		case len(dst) == 0:
			keep = inSrc
		case len(src) == 0:
			keep = inDst
		case and:
			keep = inSrc && inDst
		default:
			keep = inSrc || inDst
		}
		if keep {
			out = append(out, p)
		}
	}
	return s.withTags(out), nil
}

func (s *fakeStore) Tags(context.Context) ([]policy.Tag, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.fail["Tags"]; err != nil {
		return nil, err
	}
	tags := []policy.Tag{}
	for guid, id := range s.groups {
		tags = append(tags, policy.Tag{ID: guid, Tag: policy.FormatTag(id, 2), Type: "app"})
	}
	slices.SortFunc(tags, func(a, b policy.Tag) int { return strings.Compare(a.Tag, b.Tag) })
	return tags, nil
}

func (s *fakeStore) CheckDatabase(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail["CheckDatabase"]
}

// ---- UAA ----

// fakeUAA answers check_token and client-credentials token requests like
// UAA: HTTP Basic auth as the policy server's client is required (401
// otherwise), unknown, forged and expired tokens get 400 invalid_token.
type fakeUAA struct {
	*httptest.Server
	client, secret, clientToken string

	mu      sync.Mutex
	users   map[string]map[string]any // bearer token → check_token answer
	expired map[string]bool

	delay          atomic.Int64 // nanoseconds before answering
	down           atomic.Bool  // 500 for everything
	refuseGrant    atomic.Bool  // 401 for client-credentials grants
	tokenRequests  atomic.Int64
	checkRequests  atomic.Int64
	lastCheckToken atomic.Value
}

// newFakeUAA starts the fake UAA, over TLS when tlsConfig is given.
func newFakeUAA(t testing.TB, tlsConfig ...*tls.Config) *fakeUAA {
	u := &fakeUAA{client: "network-policy", secret: "s3cret", clientToken: "policy-server-client-token",
		users: map[string]map[string]any{}, expired: map[string]bool{}}
	u.Server = startServer(t, http.HandlerFunc(u.serve), tlsConfig)
	return u
}

func startServer(t testing.TB, h http.Handler, tlsConfig []*tls.Config) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	if len(tlsConfig) > 0 {
		srv.TLS = tlsConfig[0].Clone()
		srv.TLS.ClientAuth = tls.NoClientCert
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

// addUser registers a user token with scopes.
func (u *fakeUAA) addUser(token, userID, userName string, scopes ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[token] = map[string]any{"user_id": userID, "sub": userID, "user_name": userName, "client_id": "cf", "scope": scopes,
		"exp": time.Now().Add(time.Hour).Unix(), "jti": "x"}
}

// addClient registers a client-credentials token (no user).
func (u *fakeUAA) addClient(token, clientID string, scopes ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[token] = map[string]any{"sub": clientID, "client_id": clientID, "scope": scopes}
}

func (u *fakeUAA) expire(token string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.expired[token] = true
}

func (u *fakeUAA) serve(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(u.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	if u.down.Load() {
		http.Error(w, `{"error":"server_error"}`, http.StatusInternalServerError)
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != u.client || pass != u.secret {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"unauthorized","error_description":"Bad credentials"}`))
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/x-www-form-urlencoded" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case "/check_token":
		u.checkRequests.Add(1)
		tok := r.PostForm.Get("token")
		u.lastCheckToken.Store(tok)
		u.mu.Lock()
		claims, known := u.users[tok]
		expired := u.expired[tok]
		u.mu.Unlock()
		switch {
		case expired:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_token","error_description":"Token has expired"}`))
		case !known:
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_token","error_description":"Invalid token (could not decode): ` + tok + `"}`))
		default:
			_ = json.NewEncoder(w).Encode(claims)
		}
	case "/oauth/token":
		u.tokenRequests.Add(1)
		if u.refuseGrant.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"unauthorized","error_description":"Bad credentials"}`))
			return
		}
		if r.PostForm.Get("grant_type") != "client_credentials" || r.PostForm.Get("client_id") != u.client {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_request"}`))
			return
		}
		_, _ = fmt.Fprintf(w, `{"access_token":%q,"token_type":"bearer","expires_in":43199,"scope":"cloud_controller.admin_read_only","jti":"j"}`, u.clientToken)
	default:
		http.NotFound(w, r)
	}
}

// ---- Cloud Controller ----

type ccSpace struct{ name, org string }

// fakeCC answers the Cloud Controller calls the policy server makes, from
// apps (app → space), spaces and their developers. It requires the policy
// server's client token ("bearer <token>") and records every request.
type fakeCC struct {
	*httptest.Server
	clientToken string

	mu         sync.Mutex
	apps       map[string]string
	spaces     map[string]ccSpace
	developers map[string][]string // space → user ids
	pageSize   int                 // user spaces per page
	duplicate  bool                // space search finds two spaces
	requests   []string

	delay atomic.Int64
	down  atomic.Bool
}

// newFakeCC starts the fake Cloud Controller, over TLS when tlsConfig is
// given.
func newFakeCC(t testing.TB, clientToken string, tlsConfig ...*tls.Config) *fakeCC {
	c := &fakeCC{clientToken: clientToken, apps: map[string]string{}, spaces: map[string]ccSpace{},
		developers: map[string][]string{}, pageSize: 100}
	c.Server = startServer(t, http.HandlerFunc(c.serve), tlsConfig)
	return c
}

func (c *fakeCC) addSpace(guid, name, org string, developers ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.spaces[guid] = ccSpace{name, org}
	c.developers[guid] = developers
}

func (c *fakeCC) addApp(app, space string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.apps[app] = space
}

func (c *fakeCC) recorded() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.requests)
}

func (c *fakeCC) serve(w http.ResponseWriter, r *http.Request) {
	if d := time.Duration(c.delay.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests = append(c.requests, r.Method+" "+r.URL.RequestURI())
	if c.down.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"cc is down"}`))
		return
	}
	if r.Header.Get("Authorization") != "bearer "+c.clientToken {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"errors":[{"detail":"Invalid Auth Token","title":"CF-InvalidAuthToken","code":1000}]}`))
		return
	}
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/v3/apps":
		perPage, err := strconv.Atoi(q.Get("per_page"))
		if err != nil || perPage < 1 || perPage > 5000 {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"errors":[{"detail":"Per page must be between 1 and 5000","title":"CF-BadQueryParameter","code":10005}]}`))
			return
		}
		type resource struct {
			GUID  string `json:"guid"`
			Links struct {
				Space struct {
					Href string `json:"href"`
				} `json:"space"`
			} `json:"links"`
		}
		var found []resource
		for _, g := range strings.Split(q.Get("guids"), ",") {
			if space, ok := c.apps[g]; ok {
				var res resource
				res.GUID = g
				res.Links.Space.Href = c.URL + "/v3/spaces/" + space
				found = append(found, res)
			}
		}
		pages := max(1, (len(found)+perPage-1)/perPage)
		if len(found) > perPage {
			found = found[:perPage]
		}
		writeCC(w, map[string]any{"pagination": map[string]any{"total_results": len(found), "total_pages": pages}, "resources": found})
	case strings.HasPrefix(r.URL.Path, "/v2/spaces/"):
		guid := strings.TrimPrefix(r.URL.Path, "/v2/spaces/")
		s, ok := c.spaces[guid]
		if !ok {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"description":"The app space could not be found: ` + guid + `","error_code":"CF-SpaceNotFound","code":40004}`))
			return
		}
		writeCC(w, map[string]any{"metadata": map[string]any{"guid": guid}, "entity": map[string]any{"name": s.name, "organization_guid": s.org}})
	case r.URL.Path == "/v2/spaces":
		filters := map[string]string{}
		for _, f := range q["q"] {
			k, v, _ := strings.Cut(f, ":")
			filters[k] = v
		}
		var res []any
		for guid, s := range c.spaces {
			if s.name == filters["name"] && s.org == filters["organization_guid"] && slices.Contains(c.developers[guid], filters["developer_guid"]) {
				res = append(res, map[string]any{"metadata": map[string]any{"guid": guid}, "entity": map[string]any{"name": s.name, "organization_guid": s.org}})
				if c.duplicate {
					res = append(res, res[0])
				}
			}
		}
		writeCC(w, map[string]any{"total_results": len(res), "total_pages": 1, "next_url": nil, "resources": res})
	case strings.HasPrefix(r.URL.Path, "/v2/users/") && strings.HasSuffix(r.URL.Path, "/spaces"):
		user, _ := url.PathUnescape(strings.TrimSuffix(strings.TrimPrefix(r.URL.EscapedPath(), "/v2/users/"), "/spaces"))
		var guids []string
		for guid, devs := range c.developers {
			if slices.Contains(devs, user) {
				guids = append(guids, guid)
			}
		}
		slices.Sort(guids)
		page := 1
		if p := q.Get("page"); p != "" {
			page, _ = strconv.Atoi(p)
		}
		lo, hi := min((page-1)*c.pageSize, len(guids)), min(page*c.pageSize, len(guids))
		var res []any
		for _, g := range guids[lo:hi] {
			res = append(res, map[string]any{"metadata": map[string]any{"guid": g}, "entity": map[string]any{"name": c.spaces[g].name}})
		}
		var next any
		if hi < len(guids) {
			next = fmt.Sprintf("/v2/users/%s/spaces?order-direction=asc&page=%d&results-per-page=%d", url.PathEscape(user), page+1, c.pageSize)
		}
		writeCC(w, map[string]any{"total_results": len(guids), "next_url": next, "resources": res})
	default:
		http.NotFound(w, r)
	}
}

func writeCC(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

var errDB = errors.New("database is down")
