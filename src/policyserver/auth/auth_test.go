package auth_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

type recorded struct {
	method, uri, auth, contentType, body string
}

// recorder is an HTTP server answering every request with the next canned
// (status, body) and recording what it was sent.
type recorder struct {
	*httptest.Server
	mu       sync.Mutex
	requests []recorded
	answers  []string // "status body"
}

func newRecorder(t *testing.T, answers ...string) *recorder {
	r := &recorder{answers: answers}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests = append(r.requests, recorded{req.Method, req.URL.RequestURI(), req.Header.Get("Authorization"), req.Header.Get("Content-Type"), string(b)})
		answer := "500 no answer left"
		if len(r.answers) > 0 {
			answer, r.answers = r.answers[0], r.answers[1:]
		}
		var status int
		var body string
		_, _ = fmt.Sscanf(answer, "%d", &status)
		body = answer[4:]
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) got() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]recorded(nil), r.requests...)
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestUAACheckToken(t *testing.T) {
	srv := newRecorder(t,
		`200 {"scope":["network.admin","openid"],"sub":"uid-1","user_name":"admin","client_id":"cf","user_id":"uid-1","exp":1}`,
		`400 {"error":"invalid_token","error_description":"Token has expired"}`,
		`401 {"error":"unauthorized"}`,
		`200 not json`,
	)
	c := auth.NewUAAClient(logtest.New(t), auth.NewHTTPClient(nil, time.Second), srv.URL+"/", "network-policy", "p@ss")
	ctx := context.Background()
	tok, err := c.CheckToken(ctx, "eyJ.abc-_.sig")
	if err != nil {
		t.Fatal(err)
	}
	want := auth.Token{Scope: []string{"network.admin", "openid"}, Subject: "uid-1", UserName: "admin", ClientID: "cf", UserID: "uid-1"}
	if diff := cmp.Diff(want, tok); diff != "" {
		t.Errorf("token (-want +got):\n%s", diff)
	}
	if !tok.IsAdmin() || tok.WhoAmI() != "admin" {
		t.Error("IsAdmin/WhoAmI")
	}
	if _, err := c.CheckToken(ctx, "expired"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("expired token: %v", err)
	}
	if _, err := c.CheckToken(ctx, "x"); err == nil || errors.Is(err, auth.ErrInvalidToken) || !strings.Contains(err.Error(), "bad uaa response: 401") {
		t.Errorf("bad client credentials: %v", err)
	}
	if _, err := c.CheckToken(ctx, "x"); err == nil || !strings.Contains(err.Error(), "unmarshal json") {
		t.Errorf("bad json: %v", err)
	}
	reqs := srv.got()
	first := reqs[0]
	if first.method != "POST" || first.uri != "/check_token" || first.auth != basic("network-policy", "p@ss") ||
		first.contentType != "application/x-www-form-urlencoded" || first.body != "token=eyJ.abc-_.sig" {
		t.Errorf("check_token request: %+v", first)
	}
	// A token cannot smuggle form fields (upstream did not escape it).
	_, _ = c.CheckToken(ctx, "a&token=b")
	if got := srv.got()[4].body; got != "token=a%26token%3Db" {
		t.Errorf("escaped body = %q", got)
	}
}

func TestUAAGetTokenIsCachedUntilNearExpiry(t *testing.T) {
	srv := newRecorder(t,
		`200 {"access_token":"t1","expires_in":43199}`,
		`200 {"access_token":"t2","expires_in":60}`,
		`200 {"access_token":"t3","expires_in":60}`,
		`200 {"expires_in":60}`,
	)
	c := auth.NewUAAClient(logtest.New(t), auth.NewHTTPClient(nil, time.Second), srv.URL, "network-policy", "s")
	ctx := context.Background()
	for range 3 {
		if tok, err := c.GetToken(ctx); err != nil || tok != "t1" {
			t.Fatalf("GetToken = %q, %v", tok, err)
		}
	}
	if n := len(srv.got()); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	r := srv.got()[0]
	if r.uri != "/oauth/token" || r.body != "client_id=network-policy&grant_type=client_credentials" || r.auth != basic("network-policy", "s") {
		t.Errorf("token request: %+v", r)
	}
	c.Invalidate()
	// Short-lived tokens are not cached.
	for _, want := range []string{"t2", "t3"} {
		if tok, _ := c.GetToken(ctx); tok != want {
			t.Errorf("GetToken = %q, want %q", tok, want)
		}
	}
	if _, err := c.GetToken(ctx); err == nil {
		t.Error("accepted a response without access_token")
	}
}

func TestCCClientRequests(t *testing.T) {
	srv := newRecorder(t,
		`200 {"pagination":{"total_pages":1},"resources":[{"guid":"a1","links":{"space":{"href":"https://cc/v3/spaces/s1"}}}]}`,
		`200 {"pagination":{"total_pages":2},"resources":[]}`,
		`404 {"description":"The app space could not be found","error_code":"CF-SpaceNotFound","code":40004}`,
		`500 {"error":"boom"}`,
		`200 {"metadata":{"guid":"s1"},"entity":{"name":"my space","organization_guid":"o1"}}`,
		`200 {"resources":[{"metadata":{"guid":"s1"}}]}`,
		`200 {"resources":[]}`,
		`200 {"resources":[{},{}]}`,
		`200 {"next_url":"/v2/users/u%201/spaces?page=2&results-per-page=100","resources":[{"metadata":{"guid":"s1"}}]}`,
		`200 {"next_url":null,"resources":[{"metadata":{"guid":"s2"}}]}`,
		`200 {"resources":[{"guid":"a1"},{"guid":"a3"}],"pagination":{"total_pages":1}}`,
	)
	c := auth.NewCCClient(logtest.New(t), auth.NewHTTPClient(nil, time.Second), srv.URL)
	ctx := context.Background()
	spaces, err := c.AppSpaces(ctx, "tok", []string{"a1", "a2"})
	if err != nil || !cmp.Equal(spaces, map[string]string{"a1": "s1"}) {
		t.Errorf("AppSpaces = %v, %v", spaces, err)
	}
	if _, err := c.AppSpaces(ctx, "tok", []string{"a1"}); err == nil || err.Error() != "pagination support not yet implemented" {
		t.Errorf("two pages: %v", err)
	}
	if s, err := c.Space(ctx, "tok", "gone"); s != nil || err != nil {
		t.Errorf("404 space = %v, %v", s, err)
	}
	if _, err := c.Space(ctx, "tok", "s1"); err == nil || !strings.Contains(err.Error(), "status 500: boom") {
		t.Errorf("500 space: %v", err)
	}
	s, err := c.Space(ctx, "tok", "s1")
	if err != nil || *s != (auth.Space{Name: "my space", OrganizationGUID: "o1"}) {
		t.Errorf("Space = %v, %v", s, err)
	}
	for _, want := range []bool{true, false} {
		if ok, err := c.IsSpaceDeveloper(ctx, "tok", "u 1", *s); ok != want || err != nil {
			t.Errorf("IsSpaceDeveloper = %v, %v; want %v", ok, err, want)
		}
	}
	if _, err := c.IsSpaceDeveloper(ctx, "tok", "u 1", *s); err == nil || err.Error() != "found more than one matching space" {
		t.Errorf("two matches: %v", err)
	}
	all, err := c.SubjectSpaces(ctx, "tok", "u 1")
	if err != nil || !cmp.Equal(all, map[string]struct{}{"s1": {}, "s2": {}}) {
		t.Errorf("SubjectSpaces = %v, %v", all, err)
	}
	live, err := c.LiveAppGUIDs(ctx, "tok", []string{"a1", "a2", "a3"})
	if err != nil || !cmp.Equal(live, map[string]struct{}{"a1": {}, "a3": {}}) {
		t.Errorf("LiveAppGUIDs = %v, %v", live, err)
	}

	var uris []string
	for _, r := range srv.got() {
		if r.auth != "bearer tok" || r.method != "GET" {
			t.Errorf("request %+v", r)
		}
		uris = append(uris, r.uri)
	}
	want := []string{
		"/v3/apps?guids=a1%2Ca2&per_page=2",
		"/v3/apps?guids=a1&per_page=1",
		"/v2/spaces/gone",
		"/v2/spaces/s1",
		"/v2/spaces/s1",
		"/v2/spaces?q=developer_guid%3Au+1&q=name%3Amy+space&q=organization_guid%3Ao1",
		"/v2/spaces?q=developer_guid%3Au+1&q=name%3Amy+space&q=organization_guid%3Ao1",
		"/v2/spaces?q=developer_guid%3Au+1&q=name%3Amy+space&q=organization_guid%3Ao1",
		"/v2/users/u%201/spaces?results-per-page=100",
		"/v2/users/u%201/spaces?page=2&results-per-page=100",
		"/v3/apps?guids=a1%2Ca2%2Ca3&per_page=3",
	}
	if diff := cmp.Diff(want, uris); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestCCClientDistrustsPagination(t *testing.T) {
	srv := newRecorder(t,
		`200 {"next_url":"https://evil.example/steal","resources":[]}`,
		`200 {"next_url":"/v2/users/u/spaces?results-per-page=100","resources":[]}`,
	)
	c := auth.NewCCClient(logtest.New(t), auth.NewHTTPClient(nil, time.Second), srv.URL)
	if _, err := c.SubjectSpaces(context.Background(), "tok", "u"); err == nil || !strings.Contains(err.Error(), "is not a path") {
		t.Errorf("absolute next_url: %v", err)
	}
	if _, err := c.SubjectSpaces(context.Background(), "tok", "u"); err == nil || !strings.Contains(err.Error(), "pagination loop") {
		t.Errorf("looping next_url: %v", err)
	}
}

func TestClientTLS(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"pagination":{"total_pages":1},"resources":[]}`)
	}))
	srv.TLS = files.ServerConfig(t)
	srv.TLS.ClientAuth = tls.NoClientCert
	srv.StartTLS()
	t.Cleanup(srv.Close)
	empty := filepath.Join(t.TempDir(), "empty.crt")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	call := func(cfg *tls.Config) error {
		c := auth.NewCCClient(logtest.New(t), auth.NewHTTPClient(cfg, time.Second), srv.URL)
		_, err := c.LiveAppGUIDs(context.Background(), "t", []string{"a"})
		return err
	}
	trusted, err := auth.ClientTLSConfig(false, empty, files.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := call(trusted); err != nil {
		t.Errorf("trusted CA: %v", err)
	}
	if trusted.MinVersion != tls.VersionTLS12 {
		t.Error("TLS floor")
	}
	other, _ := auth.ClientTLSConfig(false, files.OtherCAFile)
	if err := call(other); err == nil {
		t.Error("server verified against the wrong CA")
	}
	skip, _ := auth.ClientTLSConfig(true, "/nonexistent")
	if err := call(skip); err != nil {
		t.Errorf("skip_ssl_validation: %v", err)
	}
	if _, err := auth.ClientTLSConfig(false, "/nonexistent"); err == nil {
		t.Error("missing CA file accepted")
	}
	if _, err := auth.ClientTLSConfig(false, files.ServerKey); err == nil {
		t.Error("a key accepted as a CA")
	}
}

// ccStub answers the guard's CC questions from maps, counting /v3/apps calls.
type ccStub struct {
	spaces     map[string]string
	appsCalls  int
	maxPerCall int
}

func (c *ccStub) AppSpaces(_ context.Context, _ string, guids []string) (map[string]string, error) {
	c.appsCalls++
	c.maxPerCall = max(c.maxPerCall, len(guids))
	out := map[string]string{}
	for _, g := range guids {
		if s, ok := c.spaces[g]; ok {
			out[g] = s
		}
	}
	return out, nil
}
func (c *ccStub) Space(context.Context, string, string) (*auth.Space, error) {
	return &auth.Space{Name: "n", OrganizationGUID: "o"}, nil
}
func (c *ccStub) IsSpaceDeveloper(context.Context, string, string, auth.Space) (bool, error) {
	return true, nil
}
func (c *ccStub) SubjectSpaces(context.Context, string, string) (map[string]struct{}, error) {
	return map[string]struct{}{"s": {}}, nil
}

type staticToken string

func (s staticToken) GetToken(context.Context) (string, error) { return string(s), nil }

func TestCCAccessChunksAppQueries(t *testing.T) {
	cc := &ccStub{spaces: map[string]string{}}
	var ps []policy.Policy
	for i := range 125 {
		src, dst := fmt.Sprintf("s%d", i), fmt.Sprintf("d%d", i)
		cc.spaces[src], cc.spaces[dst] = "s", "s"
		ps = append(ps, policy.NewPolicy(src, dst, "tcp", 1, 1))
	}
	a := auth.NewCCAccess(staticToken("t"), cc)
	user := auth.Token{Subject: "u", Scope: []string{auth.ScopeWrite}}
	ok, err := a.CheckAccess(context.Background(), user, ps, true)
	if !ok || err != nil || cc.appsCalls != 3 || cc.maxPerCall != 100 {
		t.Errorf("CheckAccess = %v, %v after %d calls of at most %d", ok, err, cc.appsCalls, cc.maxPerCall)
	}
	got, err := a.FilterPolicies(context.Background(), user, ps)
	if err != nil || len(got) != 125 {
		t.Errorf("FilterPolicies kept %d, %v", len(got), err)
	}
	admin := auth.Token{Scope: []string{auth.ScopeAdmin}}
	cc.appsCalls = 0
	if ok, _ := a.CheckAccess(context.Background(), admin, ps, true); !ok || cc.appsCalls != 0 {
		t.Error("admin was checked")
	}
}

func TestLoadTokensFile(t *testing.T) {
	dir := t.TempDir()
	write := func(content string) string {
		p := filepath.Join(dir, fmt.Sprintf("t%d.json", time.Now().UnixNano()))
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct{ content, wantErr string }{
		{`{}`, "no tokens"},
		{`[]`, "parsing tokens file"},
		{`{"t": {"user_name": "u", "app_guid": ["a"]}}`, `unknown field "app_guid"`},
		{`{"t": {"scopes": ["network.admin"]}}`, "user_name: missing required value"},
		{`{" t": {"user_name": "u"}}`, "a token must be non-empty"},
		{`{"t": {"user_name": "u", "app_guids": [""]}}`, "app_guids: empty guid"},
	} {
		_, err := auth.LoadTokensFile(write(tt.content))
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: err = %v, want %q", tt.content, err, tt.wantErr)
		}
	}
	if _, err := auth.LoadTokensFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing file accepted")
	}
	fa, err := auth.LoadTokensFile(write(`{"secret-1": {"user_name": "dev", "scopes": ["network.write"], "app_guids": ["a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := fa.CheckToken(context.Background(), "secret-1")
	want := auth.Token{Scope: []string{"network.write"}, Subject: "dev", UserID: "dev", UserName: "dev", Apps: []string{"a"}}
	if err != nil || !cmp.Equal(want, tok) {
		t.Errorf("CheckToken = %+v, %v", tok, err)
	}
	if _, err := fa.CheckToken(context.Background(), "secret-2"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("unknown token: %v", err)
	}
}
