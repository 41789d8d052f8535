// Package cc stands in for Cloud Controller (and its UAA token endpoint)
// as policy-server-asg-syncer sees it: the v3 security group listing with
// pages and space bindings, the internal asg_latest_update marker, and the
// failures a real one shows (outage, slowness, garbage, inconsistent
// paging). Tests mutate it through Go methods; the lab runs it as a server
// (`netman-lab cc`, Run) and changes it through a small write API (Admin).
package cc

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// MaxPerPage is Cloud Controller's largest page.
const MaxPerPage = 5000

// Rule is one security group rule as Cloud Controller returns it; zero
// values are left out, as Cloud Controller leaves out unset keys.
type Rule struct {
	Protocol    string `json:"protocol"`
	Destination string `json:"destination"`
	Ports       string `json:"ports,omitempty"`
	Type        *int   `json:"type,omitempty"`
	Code        *int   `json:"code,omitempty"`
	Description string `json:"description,omitempty"`
	Log         bool   `json:"log,omitempty"`
}

// SecurityGroup is a security group with its bindings.
type SecurityGroup struct {
	GUID           string
	Name           string
	Rules          []Rule
	RunningDefault bool // globally_enabled.running
	StagingDefault bool // globally_enabled.staging
	RunningSpaces  []string
	StagingSpaces  []string
}

// Endpoint selects what a failure applies to.
type Endpoint int

// Endpoints.
const (
	List         Endpoint = iota // GET /v3/security_groups
	LatestUpdate                 // GET /internal/v4/asg_latest_update
	Token                        // POST /oauth/token
)

// Failure is how an endpoint misbehaves.
type Failure int

// Failures.
const (
	Healthy     Failure = iota
	Outage              // 503 with a Cloud Controller error body
	Garbage             // 200 with an HTML body
	EmptyObject         // 200 with "{}": valid JSON, no listing
	Slow                // answers only after the delay set by SetDelay
)

// Server is the fake. The zero value is not usable; use New.
type Server struct {
	clientID, clientSecret, token string

	mu         sync.Mutex
	groups     []SecurityGroup // in creation order, as CC lists them
	lastUpdate time.Time
	failures   map[Endpoint]Failure
	delay      time.Duration
	pageLimit  int
	onPage     func(page int)
	requests   map[Endpoint]int

	servers []*http.Server
}

// New returns an empty Cloud Controller whose UAA grants Token() to the
// given client; its marker starts at the current time.
func New(clientID, clientSecret string) *Server {
	return &Server{
		clientID: clientID, clientSecret: clientSecret,
		token:      "fake-cc-token-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		lastUpdate: time.Now().UTC(),
		failures:   map[Endpoint]Failure{},
		requests:   map[Endpoint]int{},
		pageLimit:  MaxPerPage,
	}
}

// Token is the bearer token the fake UAA hands out and the fake CC accepts.
func (s *Server) Token() string { return s.token }

// bump moves the marker strictly forward (also within one clock tick).
// Callers hold mu.
func (s *Server) bump() {
	now := time.Now().UTC()
	if !now.After(s.lastUpdate) {
		now = s.lastUpdate.Add(time.Microsecond)
	}
	s.lastUpdate = now
}

// Put creates or replaces a security group through the v3 API (bumping
// asg_latest_update).
func (s *Server) Put(g SecurityGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(g)
	s.bump()
}

// PutV2 creates or replaces a security group through the v2 API, which
// does not bump asg_latest_update (as Cloud Controller).
func (s *Server) PutV2(g SecurityGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(g)
}

func (s *Server) put(g SecurityGroup) {
	g.Rules = slices.Clone(g.Rules)
	g.RunningSpaces, g.StagingSpaces = slices.Clone(g.RunningSpaces), slices.Clone(g.StagingSpaces)
	for i := range s.groups {
		if s.groups[i].GUID == g.GUID {
			s.groups[i] = g
			return
		}
	}
	s.groups = append(s.groups, g)
}

// Delete removes a security group (v3, bumping the marker); it reports
// whether it existed.
func (s *Server) Delete(guid string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.groups, func(g SecurityGroup) bool { return g.GUID == guid })
	if i < 0 {
		return false
	}
	s.groups = slices.Delete(s.groups, i, i+1)
	s.bump()
	return true
}

// Update changes one security group in place (v3, bumping the marker).
func (s *Server) Update(guid string, fn func(*SecurityGroup)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.groups {
		if s.groups[i].GUID == guid {
			fn(&s.groups[i])
			s.bump()
			return nil
		}
	}
	return fmt.Errorf("security group %s not found", guid)
}

// BindRunning binds a security group to a space for running apps.
func (s *Server) BindRunning(guid, space string) error {
	return s.Update(guid, func(g *SecurityGroup) {
		if !slices.Contains(g.RunningSpaces, space) {
			g.RunningSpaces = append(g.RunningSpaces, space)
		}
	})
}

// UnbindRunning removes a running binding.
func (s *Server) UnbindRunning(guid, space string) error {
	return s.Update(guid, func(g *SecurityGroup) {
		g.RunningSpaces = slices.DeleteFunc(g.RunningSpaces, func(x string) bool { return x == space })
	})
}

// Groups returns the security groups, in listing order.
func (s *Server) Groups() []SecurityGroup {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.groups)
}

// LastUpdate is the current asg_latest_update marker.
func (s *Server) LastUpdate() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastUpdate
}

// SetFailure makes an endpoint fail (Healthy restores it).
func (s *Server) SetFailure(e Endpoint, f Failure) {
	s.mu.Lock()
	s.failures[e] = f
	s.mu.Unlock()
}

// SetDelay is how long Slow endpoints wait before answering.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

// SetPageLimit caps per_page below Cloud Controller's 5000, so small
// listings span several pages.
func (s *Server) SetPageLimit(n int) {
	s.mu.Lock()
	s.pageLimit = n
	s.mu.Unlock()
}

// OnPage calls fn after each listing page is served (nil to stop), to
// change Cloud Controller between the pages of one listing.
func (s *Server) OnPage(fn func(page int)) {
	s.mu.Lock()
	s.onPage = fn
	s.mu.Unlock()
}

// Requests is how many requests an endpoint has answered.
func (s *Server) Requests(e Endpoint) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[e]
}

// Handler serves both Cloud Controller listeners and UAA's token endpoint.
// The internal endpoint answers only requests with a verified client
// certificate, as Cloud Controller's mutual TLS listener.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", s.serveToken)
	mux.HandleFunc("GET /v3/security_groups", s.serveList)
	mux.HandleFunc("GET /internal/v4/asg_latest_update", s.serveLatest)
	return mux
}

// Start serves Handler on another listener at addr ("127.0.0.1:0" for
// any port) with tlsConfig (nil: plain HTTP) and returns its address. A
// deployment-like setup starts two: the public API (server TLS) and the
// internal API (mutual TLS). Close stops them all.
func (s *Server) Start(addr string, tlsConfig *tls.Config) (string, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	if tlsConfig != nil {
		lis = tls.NewListener(lis, tlsConfig)
	}
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	go func() { _ = srv.Serve(lis) }()
	return lis.Addr().String(), nil
}

// Close stops every listener Start opened.
func (s *Server) Close() error {
	s.mu.Lock()
	servers := s.servers
	s.servers = nil
	s.mu.Unlock()
	var errs []error
	for _, srv := range servers {
		errs = append(errs, srv.Close())
	}
	return errors.Join(errs...)
}

// misbehave applies the endpoint's failure; it reports whether the
// request was answered.
func (s *Server) misbehave(w http.ResponseWriter, r *http.Request, e Endpoint) bool {
	s.mu.Lock()
	s.requests[e]++
	f, delay := s.failures[e], s.delay
	s.mu.Unlock()
	switch f {
	case Outage:
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"errors": []map[string]any{{"code": 10015, "title": "CF-ServiceUnavailable", "detail": "Service unavailable"}}})
	case Garbage:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte("<html><body>502 Bad Gateway</body></html>"))
	case EmptyObject:
		writeJSON(w, http.StatusOK, map[string]any{})
	case Slow:
		select {
		case <-time.After(delay):
			return false
		case <-r.Context().Done():
			// The client gave up: never answer it. Returning would send
			// an empty 200, which a client racing its own timeout could
			// read as a (garbage) answer.
			panic(http.ErrAbortHandler)
		}
	default:
		return false
	}
	return true
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if s.misbehave(w, r, Token) {
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok || id != s.clientID || secret != s.clientSecret || r.FormValue("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized", "error_description": "Bad credentials"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": s.token, "token_type": "bearer", "expires_in": 43199})
}

func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if r.Header.Get("Authorization") != "bearer "+s.token {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"errors": []map[string]any{{"code": 1000, "title": "CF-InvalidAuthToken", "detail": "Invalid Auth Token"}}})
		return false
	}
	return true
}

func (s *Server) serveLatest(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		http.Error(w, "Forbidden", http.StatusForbidden)
		return
	}
	if s.misbehave(w, r, LatestUpdate) || !s.authorized(w, r) {
		return
	}
	s.mu.Lock()
	t := s.lastUpdate
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"last_update": t.Format(time.RFC3339Nano)})
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	if s.misbehave(w, r, List) || !s.authorized(w, r) {
		return
	}
	page, err1 := positive(r.URL.Query().Get("page"), 1)
	perPage, err2 := positive(r.URL.Query().Get("per_page"), 50)
	if err := errors.Join(err1, err2); err != nil || perPage > MaxPerPage {
		writeJSON(w, http.StatusBadRequest, map[string]any{"errors": []map[string]any{{"code": 10008, "title": "CF-UnprocessableEntity", "detail": fmt.Sprint("bad pagination: ", err)}}})
		return
	}
	s.mu.Lock()
	perPage = min(perPage, s.pageLimit)
	total := len(s.groups)
	from := min((page-1)*perPage, total)
	to := min(from+perPage, total)
	resources := make([]map[string]any, 0, to-from)
	for _, g := range s.groups[from:to] {
		resources = append(resources, resource(g))
	}
	onPage := s.onPage
	s.mu.Unlock()

	pages := max(1, (total+perPage-1)/perPage)
	link := func(p int) map[string]string {
		return map[string]string{"href": fmt.Sprintf("https://%s/v3/security_groups?page=%d&per_page=%d", r.Host, p, perPage)}
	}
	var next, prev any
	if page < pages {
		next = link(page + 1)
	}
	if page > 1 {
		prev = link(page - 1)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"pagination": map[string]any{
			"total_results": total, "total_pages": pages,
			"first": link(1), "last": link(pages), "next": next, "previous": prev,
		},
		"resources": resources,
	})
	if onPage != nil {
		onPage(page)
	}
}

func resource(g SecurityGroup) map[string]any {
	rules := g.Rules
	if rules == nil {
		rules = []Rule{}
	}
	return map[string]any{
		"guid":             g.GUID,
		"created_at":       "2026-01-01T00:00:00Z",
		"updated_at":       "2026-01-01T00:00:00Z",
		"name":             g.Name,
		"globally_enabled": map[string]bool{"running": g.RunningDefault, "staging": g.StagingDefault},
		"rules":            rules,
		"relationships": map[string]any{
			"staging_spaces": map[string]any{"data": guidList(g.StagingSpaces)},
			"running_spaces": map[string]any{"data": guidList(g.RunningSpaces)},
		},
		"links": map[string]any{"self": map[string]string{"href": "/v3/security_groups/" + g.GUID}},
	}
}

func guidList(guids []string) []map[string]string {
	out := make([]map[string]string, 0, len(guids))
	for _, g := range guids {
		out = append(out, map[string]string{"guid": g})
	}
	return out
}

func positive(s string, def int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%q is not a positive integer", s)
	}
	return n, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
