package internalapi_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// running is a policy-server-internal started in-process on free ports.
type running struct {
	cfg   internalapi.Config
	https *http.Client
	base  string
}

func startServer(t *testing.T, db sqldb.Config) *running {
	t.Helper()
	files := mtlstest.NewTestFiles(t)
	cfg := internalapi.Config{
		LogPrefix: "cfnetworking", ListenHost: "127.0.0.1", InternalListenPort: ports.Free(t, "127.0.0.1"),
		DebugServerHost: "127.0.0.1", DebugServerPort: ports.Free(t, "127.0.0.1"), HealthCheckPort: ports.Free(t, "127.0.0.1"),
		CACertFile: files.CAFile, ServerCertFile: files.ServerCert, ServerKeyFile: files.ServerKey,
		Database: db, TagLength: 2, MetronAddress: "127.0.0.1:3457",
		Pool: sqldb.Pool{MaxOpenConnections: 20, MaxIdleConnections: 10, ConnectionsMaxLifetimeSeconds: 3600},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- internalapi.Run(ctx, logtest.New(t), lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO), cfg)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server exited with %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop within 15s")
		}
	})
	waitFor(t, done, fmt.Sprintf("http://127.0.0.1:%d/health", cfg.HealthCheckPort))
	waitFor(t, done, fmt.Sprintf("http://127.0.0.1:%d/log-level", cfg.DebugServerPort))
	https := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: files.ClientConfig(t, mtls.WithServerName(mtls.PolicyServerHost)),
	}}
	return &running{cfg: cfg, https: https, base: fmt.Sprintf("https://127.0.0.1:%d", cfg.InternalListenPort)}
}

func waitFor(t *testing.T, done <-chan error, url string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("server exited during start-up: %v", err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s never answered 200", url)
}

func get(t *testing.T, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func TestServer(t *testing.T) {
	r := startServer(t, migratedConfig(t, sqldb.TypeSQLite))

	status, body, hdr := get(t, r.https, r.base+"/networking/v1/internal/policies")
	if status != 200 || body != `{"total_policies":0,"policies":[]}` || hdr.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Fatalf("policies = %d %s %v", status, body, hdr)
	}
	req, _ := http.NewRequest("PUT", r.base+"/networking/v1/internal/tags", strings.NewReader(`{"ID":"INGRESS_ROUTER","Type":"router"}`))
	resp, err := r.https.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"id":"INGRESS_ROUTER","tag":"0001","type":"router"}` {
		t.Fatalf("tags = %d %s", resp.StatusCode, b)
	}
	status, last, hdr := get(t, r.https, r.base+"/networking/v1/internal/policies_last_updated")
	if status != 200 || hdr.Get(internalapi.LongPollHeader) != "1" {
		t.Fatalf("last updated = %d %s %v", status, last, hdr)
	}
	start := time.Now()
	if status, body, _ := get(t, r.https, r.base+"/networking/v1/internal/policies_last_updated?wait=0.5&since="+last); status != 200 || body != last || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("long-poll = %d %s after %s", status, body, time.Since(start))
	}
	if status, _, _ := get(t, r.https, r.base+"/networking/v1/internal/security_groups?per_page=5000"); status != 200 {
		t.Fatalf("security groups = %d", status)
	}
	status, sgLast, hdr := get(t, r.https, r.base+"/networking/v1/internal/security_groups_last_updated")
	if status != 200 || hdr.Get(internalapi.LongPollHeader) != "1" {
		t.Fatalf("security groups last updated = %d %s %v", status, sgLast, hdr)
	}
	start = time.Now()
	if status, body, _ := get(t, r.https, r.base+"/networking/v1/internal/security_groups_last_updated?wait=0.5&since="+sgLast); status != 200 || body != sgLast || time.Since(start) < 500*time.Millisecond {
		t.Fatalf("security groups long-poll = %d %s after %s", status, body, time.Since(start))
	}

	// The health server is plain HTTP on loopback.
	health := fmt.Sprintf("http://127.0.0.1:%d", r.cfg.HealthCheckPort)
	if status, body, hdr := get(t, http.DefaultClient, health+"/"); status != 200 || !strings.HasPrefix(body, "Network policy server, up for ") || !strings.HasSuffix(body, "s\n") || hdr.Get(internalapi.RequestIDHeader) == "" {
		t.Fatalf("uptime = %d %q %v", status, body, hdr)
	}
	if status, body, _ := get(t, http.DefaultClient, health+"/health"); status != 200 || body != "" {
		t.Fatalf("health = %d %q", status, body)
	}
	if status, body, _ := get(t, http.DefaultClient, health+"/healthz"); status != 404 || body != "404 page not found\n" {
		t.Fatalf("unknown health path = %d %q", status, body)
	}

	// Upstream's metric names, and the periodic ones, on the debug server.
	metricsURL := fmt.Sprintf("http://127.0.0.1:%d/metrics", r.cfg.DebugServerPort)
	_, text, _ := get(t, http.DefaultClient, metricsURL)
	for _, m := range []string{
		"InternalPoliciesRequestCount", "InternalPoliciesRequestTime", "CreateTagsRequestCount",
		"InternalPoliciesLastUpdatedRequestCount", "InternalPoliciesLastUpdatedLongPollRequestCount",
		"InternalSecurityGroupsRequestCount", "UptimeRequestCount", "HealthRequestCount",
		"InternalSecurityGroupsLastUpdatedRequestCount", "InternalSecurityGroupsLastUpdatedLongPollRequestCount",
		"SecurityGroupsStoreLastUpdatedSuccessTime",
		"StoreAllSuccessTime", "StoreCreateTagSuccessTime", "StoreLastUpdatedSuccessTime",
		"StoreCheckDatabaseSuccessTime", "SecurityGroupsStoreBySpaceGuidsSuccessTime",
		"uptime", "totalPolicies", "DBOpenConnections", "DBQueriesTotal", "DBQueryDurationMax",
	} {
		if !strings.Contains(text, "\n"+m+" ") {
			t.Errorf("debug /metrics lacks %s", m)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", text)
	}
}

// A long-poll in flight does not hold up shutdown: the watcher stops first
// and the request is answered at once.
func TestShutdownReleasesLongPolls(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	cfg := internalapi.Config{
		LogPrefix: "cfnetworking", ListenHost: "127.0.0.1", InternalListenPort: ports.Free(t, "127.0.0.1"),
		DebugServerHost: "127.0.0.1", DebugServerPort: ports.Free(t, "127.0.0.1"), HealthCheckPort: ports.Free(t, "127.0.0.1"),
		CACertFile: files.CAFile, ServerCertFile: files.ServerCert, ServerKeyFile: files.ServerKey,
		Database: migratedConfig(t, sqldb.TypeSQLite), TagLength: 2, MetronAddress: "127.0.0.1:3457",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- internalapi.Run(ctx, logtest.New(t), lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO), cfg)
	}()
	waitFor(t, done, fmt.Sprintf("http://127.0.0.1:%d/health", cfg.HealthCheckPort))
	c := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: files.ClientConfig(t, mtls.WithServerName(mtls.PolicyServerHost))}}
	base := fmt.Sprintf("https://127.0.0.1:%d/networking/v1/internal/policies_last_updated", cfg.InternalListenPort)
	_, last, _ := get(t, c, base)

	answered := make(chan int, 1)
	go func() {
		resp, err := c.Get(base + "?wait=30&since=" + last)
		if err != nil {
			answered <- -1
			return
		}
		resp.Body.Close()
		answered <- resp.StatusCode
	}()
	time.Sleep(300 * time.Millisecond)
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("did not stop")
	}
	if d := time.Since(stopped); d > 5*time.Second {
		t.Errorf("shutdown took %s with a long-poll in flight", d)
	}
	if status := <-answered; status != 200 {
		t.Errorf("long-poll in flight at shutdown answered %d", status)
	}
}

func TestTLSIsMutualAndModern(t *testing.T) {
	r := startServer(t, migratedConfig(t, sqldb.TypeSQLite))
	mtlstest.CheckMutualTLS(t, r.base+"/networking/v1/internal/policies_last_updated", mtls.PolicyServerHost)
}
