package netmancli_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestAgainstExternalAPI drives netman against policy-server's real
// external API handler (SQLite store, auth_tokens_file tokens), as the
// local lab runs it.
func TestAgainstExternalAPI(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens.json")
	if err := os.WriteFile(tokens, []byte(`{
		"lab-admin-secret": {"user_name": "admin", "scopes": ["network.admin"]},
		"lab-dev-secret":   {"user_name": "dev", "scopes": ["network.write"], "app_guids": ["`+guidFront+`", "`+guidBack+`"]}
	}`), 0o600); err != nil {
		t.Fatal(err)
	}
	fileAuth, err := auth.LoadTokensFile(tokens)
	if err != nil {
		t.Fatal(err)
	}
	sender, err := metrics.NewSender(nil, "policy-server", 0)
	if err != nil {
		t.Fatal(err)
	}
	logger := logtest.New(t)
	st := store.New(storetest.Open(t, sqldb.TypeSQLite, lager.NewLogger("db")), 2, sender)
	api := external.New(logger, external.Options{
		Store: st, Verifier: fileAuth, Access: auth.FileAccess{}, Quota: auth.NewQuota(st, 150), Metrics: sender,
	})
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)

	names := writeNames(t, `{"frontend": "`+guidFront+`", "backend": "`+guidBack+`", "other": "`+guidOther+`"}`)
	dev := env{"NETMAN_API": srv.URL, "NETMAN_TOKEN": "lab-dev-secret", "NETMAN_APP_NAMES": names}
	admin := env{"NETMAN_API": srv.URL, "NETMAN_TOKEN": "lab-admin-secret", "NETMAN_APP_NAMES": names}

	run(dev, "add", "frontend", "backend", "--protocol", "tcp", "--port", "8080").ok(t, "added policy: frontend -> backend tcp 8080\n")
	run(dev, "add", "backend", "frontend", "--protocol", "udp", "--port", "9000-9010").ok(t, "added policy: backend -> frontend udp 9000-9010\n")
	// The developer's token covers frontend and backend only.
	run(dev, "add", "frontend", "other", "--protocol", "tcp", "--port", "443").
		fails(t, "netman: forbidden: one or more applications cannot be found or accessed\n")
	run(admin, "add", "frontend", "other", "--protocol", "tcp", "--port", "443").ok(t, "added policy: frontend -> other tcp 443\n")

	run(admin, "list").ok(t, ""+
		"source     destination   protocol   ports\n"+
		"frontend   backend       tcp        8080\n"+
		"backend    frontend      udp        9000-9010\n"+
		"frontend   other         tcp        443\n")
	// The developer sees only policies between its apps.
	run(dev, "list", "--app", "frontend").ok(t, ""+
		"source     destination   protocol   ports\n"+
		"frontend   backend       tcp        8080\n"+
		"backend    frontend      udp        9000-9010\n")
	// --json is the server's own v1 JSON.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/networking/v1/external/policies?id="+guidOther, nil)
	req.Header.Set("Authorization", "Bearer lab-admin-secret")
	api.Handler().ServeHTTP(rec, req)
	run(admin, "list", "--json", "--app", "other").ok(t, rec.Body.String()+"\n")

	run(env{"NETMAN_API": srv.URL, "NETMAN_TOKEN": "nope"}, "list").fails(t, "netman: unauthorized: check --token / NETMAN_TOKEN\n")

	run(dev, "remove", "frontend", "backend", "--protocol", "tcp", "--port", "8080").ok(t, "removed policy: frontend -> backend tcp 8080\n")
	run(dev, "remove", "frontend", "other", "--protocol", "tcp", "--port", "443").ok(t, "policy does not exist: frontend -> other tcp 443\n")
	run(admin, "remove", "frontend", "other", "--protocol", "tcp", "--port", "443").ok(t, "removed policy: frontend -> other tcp 443\n")

	stored, err := st.All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Policy{policy.NewPolicy(guidBack, guidFront, "udp", 9000, 9010)}
	if diff := cmp.Diff(want, policy.WithoutTags(stored)); diff != "" {
		t.Fatalf("stored (-want +got):\n%s", diff)
	}
}
