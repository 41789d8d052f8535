package external_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/cleanup"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// The world of the handler tests: one org with two spaces.
//
//	space-a ("dev")  developers: alice   apps: app-a1, app-a2
//	space-b ("prod") developers: bob     apps: app-b1
//
// Tokens: admin-token (network.admin), alice-write and bob-write
// (network.write), alice-plain (no network scope), client-admin (a client
// token with network.admin and no user), expired-token.
const (
	adminToken  = "admin-token"
	aliceWrite  = "alice-write"
	alicePlain  = "alice-plain"
	bobWrite    = "bob-write"
	clientAdmin = "client-admin"
	expired     = "expired-token"
)

type harness struct {
	t       testing.TB
	store   external.Store
	fake    *fakeStore // nil on the SQL store
	uaa     *fakeUAA
	cc      *fakeCC
	sender  *metrics.Sender
	handler http.Handler
}

type setup struct {
	selfService bool
	tls         bool
	cors        []string
	timeout     time.Duration
	maxPolicies int
	fileAuth    *auth.FileAuth // replaces UAA and CC
	sqlite      bool           // the real store on a fresh SQLite database
	serverDB    string         // the real store on a fresh postgres or mysql database
}

// onEachStore runs fn against the stateful fake store and the real SQL
// store (SQLite), so handler expectations hold for what ships.
func onEachStore(t *testing.T, fn func(t *testing.T, store func(*setup))) {
	t.Run("fake", func(t *testing.T) { fn(t, func(*setup) {}) })
	t.Run("sqlite", func(t *testing.T) { fn(t, func(s *setup) { s.sqlite = true }) })
}

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// realStore is the real store on a fresh, migrated database of dbType.
func realStore(t testing.TB, dbType string, sender *metrics.Sender) *store.Store {
	t.Helper()
	return store.New(storetest.Open(t, dbType, lager.NewLogger("db")), 2, sender)
}

// stored is every policy in the store, without tags.
func (h *harness) stored() []policy.Policy {
	h.t.Helper()
	ps, err := h.store.All(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return policy.WithoutTags(ps)
}

func newHarness(t testing.TB, mods ...func(*setup)) *harness {
	t.Helper()
	s := setup{timeout: 2 * time.Second, maxPolicies: 150}
	for _, m := range mods {
		m(&s)
	}
	h := &harness{t: t, uaa: newFakeUAA(t)}
	h.cc = newFakeCC(t, h.uaa.clientToken)
	h.uaa.addUser(adminToken, "uid-admin", "admin", "openid", "network.admin")
	h.uaa.addUser(aliceWrite, "uid-alice", "alice", "openid", "network.write")
	h.uaa.addUser(alicePlain, "uid-alice", "alice", "openid", "cloud_controller.read")
	h.uaa.addUser(bobWrite, "uid-bob", "bob", "network.write")
	h.uaa.addClient(clientAdmin, "ps-client", "network.admin")
	h.uaa.addUser(expired, "uid-alice", "alice", "network.admin")
	h.uaa.expire(expired)
	h.cc.addSpace("space-a", "dev", "org-1", "uid-alice")
	h.cc.addSpace("space-b", "prod", "org-1", "uid-bob")
	h.cc.addApp("app-a1", "space-a")
	h.cc.addApp("app-a2", "space-a")
	h.cc.addApp("app-b1", "space-b")

	var err error
	h.sender, err = metrics.NewSender(nil, "policy-server", 0)
	if err != nil {
		t.Fatal(err)
	}
	if s.serverDB != "" {
		h.store = realStore(t, s.serverDB, h.sender)
	} else if s.sqlite {
		h.store = realStore(t, sqldb.TypeSQLite, h.sender)
	} else {
		h.fake = newFakeStore()
		h.store = h.fake
	}
	logger := logtest.New(t)
	if _, bench := t.(*testing.B); bench {
		logger = lager.NewLogger("bench") // no sink: logging is not what is measured
	}
	opts := external.Options{
		Store:                           h.store,
		Quota:                           auth.NewQuota(h.store, s.maxPolicies),
		Metrics:                         h.sender,
		EnableSpaceDeveloperSelfService: s.selfService,
		EnableTLS:                       s.tls,
		AllowedCORSDomains:              s.cors,
		Start:                           time.Now().Add(-90 * time.Minute),
	}
	if s.fileAuth != nil {
		opts.Verifier, opts.Access = s.fileAuth, auth.FileAccess{}
	} else {
		client := auth.NewHTTPClient(nil, s.timeout)
		uaa := auth.NewUAAClient(logger.Session("uaa"), client, h.uaa.URL, "network-policy", "s3cret")
		cc := auth.NewCCClient(logger.Session("cc"), client, h.cc.URL)
		opts.Verifier, opts.Access = uaa, auth.NewCCAccess(uaa, cc)
		opts.Cleaner = cleanup.New(logger.Session("policy-cleaner"), h.store, uaa, cc)
	}
	h.handler = external.New(logger, opts).Handler()
	return h
}

type response struct {
	code   int
	header http.Header
	body   string
}

// do sends a request; token "" sends no Authorization header.
func (h *harness) do(method, target, token, body string, headers ...string) response {
	h.t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return response{code: rec.Code, header: rec.Result().Header, body: string(b)}
}

func (h *harness) expect(r response, code int, body string) {
	h.t.Helper()
	if r.code != code || r.body != body {
		h.t.Fatalf("got %d %q\nwant %d %q", r.code, r.body, code, body)
	}
}

func (h *harness) counter(name string) uint64 {
	n, _ := h.sender.Registry().Counter(name)
	return n
}

func errBody(msg string) string { return `{"error": "` + msg + `"}` }

const (
	v1Path = "/networking/v1/external/policies"
	v0Path = "/networking/v0/external/policies"
)

func v1Body(policies ...string) string { return `{"policies":[` + strings.Join(policies, ",") + `]}` }

func v1Policy(src, dst, proto string, start, end int) string {
	return `{"source":{"id":"` + src + `"},"destination":{"id":"` + dst + `","protocol":"` + proto + `","ports":{"start":` + strconv.Itoa(start) + `,"end":` + strconv.Itoa(end) + `}}}`
}

func v0Policy(src, dst, proto string, port int) string {
	return `{"source":{"id":"` + src + `"},"destination":{"id":"` + dst + `","protocol":"` + proto + `","port":` + strconv.Itoa(port) + `}}`
}
