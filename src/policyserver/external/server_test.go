package external_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/migratedb"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

func baseConfig(t *testing.T) external.Config {
	return external.Config{
		ListenHost: "127.0.0.1", ListenPort: ports.Free(t, "127.0.0.1"), LogPrefix: "cfnetworking",
		DebugServerHost: "127.0.0.1", DebugServerPort: ports.Free(t, "127.0.0.1"),
		ClientConfig: auth.ClientConfig{RequestTimeout: 5}, Database: dbtest.NewConfig(t, sqldb.TypeSQLite), DatabaseMigrationTimeout: 60,
		TagLength: 2, MetronAddress: "127.0.0.1:3457", CleanupInterval: 3600, MaxPolicies: 150,
		Pool: sqldb.Pool{MaxOpenConnections: 10, MaxIdleConnections: 5},
	}
}

// start runs policy-server in-process until the test ends.
func start(t *testing.T, cfg external.Config, client *http.Client, base string) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	go func() { done <- external.Run(ctx, logtest.New(t), sink, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("policy-server exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("policy-server did not stop within 15s")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := client.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		select {
		case err := <-done:
			t.Fatalf("policy-server exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("policy-server not healthy: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func call(t *testing.T, c *http.Client, method, url, token, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestRunWithTokensFile(t *testing.T) {
	cfg := baseConfig(t)
	cfg.AuthTokensFile = filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(cfg.AuthTokensFile, []byte(`{"lab-admin": {"user_name": "admin", "scopes": ["network.admin"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.ListenPort)
	c := &http.Client{Timeout: 10 * time.Second}
	start(t, cfg, c, base)

	if code, _, body := call(t, c, "GET", base+"/", "", ""); code != 200 || !strings.HasPrefix(body, "Network policy server, up for ") {
		t.Errorf("uptime = %d %q", code, body)
	}
	if code, _, body := call(t, c, "POST", base+v1Path, "lab-admin", v1Body(v1Policy("a", "b", "tcp", 8080, 8080), v1Policy("b", "a", "udp", 1, 9))); code != 200 || body != "{}" {
		t.Fatalf("create = %d %s", code, body)
	}
	if code, _, body := call(t, c, "GET", base+v0Path, "lab-admin", ""); code != 200 ||
		body != `{"total_policies":1,"policies":[{"source":{"id":"a"},"destination":{"id":"b","protocol":"tcp","port":8080}}]}` {
		t.Errorf("v0 list = %d %s", code, body)
	}
	if code, _, body := call(t, c, "GET", base+"/networking/v1/external/tags", "lab-admin", ""); code != 200 ||
		body != `{"tags":[{"id":"a","tag":"0001","type":"app"},{"id":"b","tag":"0002","type":"app"}]}` {
		t.Errorf("tags = %d %s", code, body)
	}
	// The debug server's page of the policy graph, from the store.
	debugUI := fmt.Sprintf("http://127.0.0.1:%d/ui/", cfg.DebugServerPort)
	if code, _, body := call(t, c, "GET", debugUI, "", ""); code != 200 || !strings.Contains(body, "<title>netman: the policy graph</title>") {
		t.Errorf("debug /ui/ = %d %.200s", code, body)
	}
	if code, _, body := call(t, c, "GET", debugUI+"api/graph", "", ""); code != 200 ||
		!strings.Contains(body, `"edges":[{"source":"a","destination":"b","ports":["tcp 8080"]},{"source":"b","destination":"a","ports":["udp 1-9"]}]`) {
		t.Errorf("debug /ui/api/graph = %d %s", code, body)
	}
	if code, _, body := call(t, c, "GET", debugUI+"api/trace?source=a&destination=b&protocol=tcp&port=8080", "", ""); code != 200 ||
		!strings.Contains(body, `"reason":"the policy server allows it; no cell was checked"`) {
		t.Errorf("debug /ui/api/trace = %d %s", code, body)
	}
	if code, _, body := call(t, c, "POST", base+v1Path+"/cleanup", "lab-admin", ""); code != 200 || body != `{"total_policies":0,"policies":[]}` {
		t.Errorf("cleanup = %d %s", code, body)
	}
	if code, _, _ := call(t, c, "GET", base+v1Path, "wrong", ""); code != 401 {
		t.Errorf("unknown token = %d", code)
	}
	debug := fmt.Sprintf("http://127.0.0.1:%d", cfg.DebugServerPort)
	if code, _, body := call(t, c, "GET", debug+"/log-level", "", ""); code != 200 || body != "info" {
		t.Errorf("log-level = %d %q", code, body)
	}
	_, _, metrics := call(t, c, "GET", debug+"/metrics", "", "")
	for _, m := range []string{"CreatePoliciesRequestCount", "StoreCreateSuccessTime", "http_error", "DBOpenConnections", "totalPolicies", "uptime"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
}

func TestRunWithUAAAndCloudControllerOverTLS(t *testing.T) {
	// UAA, CC and the external server all use certificates of the test CA.
	files := mtlstest.NewTestFiles(t)
	uaa := newFakeUAA(t, files.ServerConfig(t))
	cc := newFakeCC(t, uaa.clientToken, files.ServerConfig(t))
	uaa.addUser("admin-token", "uid-admin", "admin", "network.admin")
	cc.addSpace("space-a", "dev", "org-1")
	cc.addApp("app-a1", "space-a")

	cfg := baseConfig(t)
	host, port, _ := net.SplitHostPort(strings.TrimPrefix(uaa.URL, "https://"))
	cfg.UAAURL, cfg.UAAClient, cfg.UAAClientSecret, cfg.UAACA = "https://"+host, "network-policy", "s3cret", files.CAFile
	cfg.UAAPort, _ = strconv.Atoi(port)
	cfg.CCURL, cfg.CCCA = cc.URL, files.CAFile
	cfg.EnableTLS, cfg.ServerCertFile, cfg.ServerKeyFile = true, files.ServerCert, files.ServerKey
	cfg.AllowedCORSDomains = []string{"*"}

	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(files.CAFile)
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	base := fmt.Sprintf("https://127.0.0.1:%d", cfg.ListenPort)
	start(t, cfg, c, base)

	code, hdr, body := call(t, c, "POST", base+v1Path, "admin-token", v1Body(v1Policy("app-a1", "gone-app", "tcp", 3333, 3333)))
	if code != 200 || body != "{}" || hdr.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Fatalf("create = %d %s %v", code, body, hdr)
	}
	code, _, body = call(t, c, "POST", base+"/networking/v0/external/policies/cleanup", "admin-token", "")
	if code != 200 || body != `{"total_policies":1,"policies":[{"source":{"id":"app-a1"},"destination":{"id":"gone-app","protocol":"tcp","ports":{"start":3333,"end":3333}}}]}` {
		t.Errorf("cleanup = %d %s", code, body)
	}
	code, _, body = call(t, c, "GET", base+v1Path, "admin-token", "")
	if code != 200 || body != `{"total_policies":0,"policies":[]}` {
		t.Errorf("list after cleanup = %d %s", code, body)
	}
	if code, _, _ := call(t, c, "GET", base+"/networking/v1/external/whoami", "nope", ""); code != 401 {
		t.Errorf("bad token = %d", code)
	}
}

func TestRunFailsOnBadStartup(t *testing.T) {
	cfg := baseConfig(t)
	cfg.AuthTokensFile = filepath.Join(t.TempDir(), "missing.json")
	err := external.Run(context.Background(), logtest.New(t), nil, cfg)
	if err == nil || !strings.Contains(err.Error(), "reading tokens file") {
		t.Errorf("missing tokens file: %v", err)
	}
	cfg = baseConfig(t)
	cfg.AuthTokensFile = ""
	cfg.UAAURL, cfg.UAAPort, cfg.UAAClient, cfg.UAAClientSecret, cfg.CCURL = "https://uaa", 443, "c", "s", "https://cc"
	cfg.UAACA = filepath.Join(t.TempDir(), "missing.crt")
	if err := external.Run(context.Background(), logtest.New(t), nil, cfg); err == nil || !strings.Contains(err.Error(), "tls config") {
		t.Errorf("missing CA: %v", err)
	}
}

func TestRunTimesOutMigrating(t *testing.T) {
	cfg := baseConfig(t)
	cfg.AuthTokensFile = filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(cfg.AuthTokensFile, []byte(`{"t": {"user_name": "u"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	// A directory where the database file should be: never openable.
	cfg.Database.DatabaseName = t.TempDir()
	cfg.DatabaseMigrationTimeout = 1
	err := external.Run(context.Background(), logtest.New(t), nil, cfg)
	if !errors.Is(err, migratedb.ErrMigrationTimeout) {
		t.Errorf("err = %v, want the migration timeout", err)
	}
}

// TestDebugUIReadsCells: with ui_cells the debug server's page reads the
// cells' agents: the app's instance from /c2c-containers and its flows
// from /app-flows (here one agent's debug server, faked).
func TestDebugUIReadsCells(t *testing.T) {
	agent := http.NewServeMux()
	agent.HandleFunc("GET "+observe.PathContainers, func(w http.ResponseWriter, r *http.Request) {
		observe.WriteJSON(w, observe.Containers{Containers: []observe.Container{{Handle: "h-b", IP: "10.255.12.2", AppGUID: "b"}}}, nil, 0)
	})
	agent.HandleFunc("GET "+observe.PathEnforced, func(w http.ResponseWriter, r *http.Request) {
		observe.WriteJSON(w, observe.Enforced{Backend: "iptables"}, nil, 0)
	})
	agent.HandleFunc("GET "+observe.PathFlows, func(w http.ResponseWriter, r *http.Request) {
		observe.WriteJSON(w, observe.Flows{Flows: []observe.Flow{{SourceIP: "10.255.11.2", DestinationApp: r.URL.Query().Get("app_guid"), Protocol: "tcp", Port: 8080, Verdict: observe.VerdictDenied}}}, nil, 0)
	})
	srv := httptest.NewServer(agent)
	t.Cleanup(srv.Close)

	cfg := baseConfig(t)
	cfg.AuthTokensFile = filepath.Join(t.TempDir(), "tokens.json")
	if err := os.WriteFile(cfg.AuthTokensFile, []byte(`{"lab-admin": {"user_name": "admin", "scopes": ["network.admin"]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.UICells = []string{srv.URL}
	base := fmt.Sprintf("http://127.0.0.1:%d", cfg.ListenPort)
	c := &http.Client{Timeout: 10 * time.Second}
	start(t, cfg, c, base)

	code, _, body := call(t, c, "GET", fmt.Sprintf("http://127.0.0.1:%d/ui/api/apps/b", cfg.DebugServerPort), "", "")
	var d observe.AppDetail
	if err := json.Unmarshal([]byte(body), &d); code != 200 || err != nil {
		t.Fatalf("/ui/api/apps/b = %d %v %s", code, err, body)
	}
	if len(d.Instances) != 1 || d.Instances[0].IP != "10.255.12.2" {
		t.Errorf("instances %+v, want the agent's container", d.Instances)
	}
	if len(d.Denied) != 1 || d.Denied[0].SourceIP != "10.255.11.2" || d.Denied[0].DestinationApp != "b" {
		t.Errorf("denied %+v, want the agent's denied flow", d.Denied)
	}
}
