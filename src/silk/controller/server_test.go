package controller_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/controller/controllertest"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// running is a silk-controller started in-process on free loopback ports.
type running struct {
	*controllertest.Controller
	cfg    controller.Config
	client *controller.Client
	https  *http.Client
	base   string
}

func startController(t *testing.T, db sqldb.Config, network string, prefix int) *running {
	t.Helper()
	c := controllertest.Start(t, controllertest.Options{Network: network, SubnetPrefixLength: prefix, Database: &db})
	return &running{Controller: c, cfg: c.Config, client: c.Client(t), https: c.HTTPClient(t), base: c.URL}
}

func (r *running) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, r.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := r.https.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAcquireFillsTheOverlayOnEveryDialect(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, db sqldb.Config) {
		r := startController(t, db, "10.255.0.0/16", 24)
		ctx := context.Background()
		const cells = 255
		leases := make([]lease.Lease, cells)
		errs := make([]error, cells)
		var wg sync.WaitGroup
		for i := 0; i < cells; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				leases[i], errs[i] = r.client.Acquire(ctx, fmt.Sprintf("10.244.%d.%d", i/200, i%200+1), false)
			}()
		}
		wg.Wait()
		subnets := map[string]bool{}
		for i, l := range leases {
			if errs[i] != nil {
				t.Fatalf("acquire %d: %v", i, errs[i])
			}
			if subnets[l.OverlaySubnet] {
				t.Fatalf("subnet %s leased twice", l.OverlaySubnet)
			}
			subnets[l.OverlaySubnet] = true
		}
		if len(subnets) != 255 {
			t.Fatalf("%d distinct subnets, want 255", len(subnets))
		}

		status, body := r.do(t, "PUT", "/leases/acquire", `{"underlay_ip":"10.244.9.9"}`)
		if status != http.StatusConflict || body != `{"error": "no lease available"}` {
			t.Fatalf("256th acquire = %d %s", status, body)
		}

		again, err := r.client.Acquire(ctx, "10.244.0.1", false)
		if err != nil || again != leases[0] {
			t.Fatalf("re-acquire = %+v, %v; want %+v", again, err, leases[0])
		}

		all, err := r.client.RoutableLeases(ctx)
		if err != nil || len(all) != 255 {
			t.Fatalf("GET /leases = %d leases, %v", len(all), err)
		}
	})
}

func TestLeaseAPI(t *testing.T) {
	r := startController(t, dbtest.NewConfig(t, sqldb.TypeSQLite), "10.255.0.0/16", 24)
	ctx := context.Background()

	status, body := r.do(t, "GET", "/leases", "")
	if status != 200 || body != `{"leases":[]}` {
		t.Fatalf("empty index = %d %s", status, body)
	}

	l, err := r.client.Acquire(ctx, "10.244.0.5", false)
	if err != nil {
		t.Fatal(err)
	}
	status, body = r.do(t, "GET", "/leases", "")
	var index struct {
		Leases []map[string]string `json:"leases"`
	}
	if err := json.Unmarshal([]byte(body), &index); status != 200 || err != nil || len(index.Leases) != 1 {
		t.Fatalf("index = %d %s", status, body)
	}
	for _, key := range []string{"underlay_ip", "overlay_subnet", "overlay_hardware_addr"} {
		if index.Leases[0][key] == "" || len(index.Leases[0]) != 3 {
			t.Fatalf("lease JSON %v lacks exactly the three upstream fields", index.Leases[0])
		}
	}

	single, err := r.client.Acquire(ctx, "10.244.0.6", true)
	if err != nil || !strings.HasSuffix(single.OverlaySubnet, "/32") {
		t.Fatalf("single_overlay_ip acquire = %+v, %v", single, err)
	}

	if err := r.client.Renew(ctx, l); err != nil {
		t.Fatalf("renew: %v", err)
	}
	status, body = r.do(t, "PUT", "/leases/renew", mustJSON(l))
	if status != 200 || body != `{}` {
		t.Fatalf("renew = %d %s", status, body)
	}
	// The acquired subnet is random: the "wrong" one must differ from it, or
	// the renewal is a legitimate one (this failed CI once in ~250 runs).
	wrong := l
	wrong.OverlaySubnet = "10.255.254.0/24"
	if l.OverlaySubnet == wrong.OverlaySubnet {
		wrong.OverlaySubnet = "10.255.253.0/24"
	}
	status, body = r.do(t, "PUT", "/leases/renew", mustJSON(wrong))
	if status != http.StatusConflict || body != `{"error": "renew-subnet-lease: lease mismatch"}` {
		t.Fatalf("renew with wrong subnet = %d %s", status, body)
	}
	if err := r.client.Renew(ctx, wrong); !controller.IsNonRetriable(err) || !strings.HasPrefix(err.Error(), "non-retriable: ") {
		t.Fatalf("client renew mismatch = %v, want a non-retriable error", err)
	}

	tests := []struct {
		name, method, path, body string
		status                   int
		errPrefix                string
	}{
		{"malformed acquire", "PUT", "/leases/acquire", `{"underlay_ip":`, 400, "unmarshal-request: "},
		{"wrong type", "PUT", "/leases/acquire", `{"underlay_ip":5}`, 400, "unmarshal-request: "},
		{"bad ip", "PUT", "/leases/acquire", `{"underlay_ip":"banana"}`, 400, "invalid ipv4 address: banana"},
		{"malformed renew", "PUT", "/leases/renew", `[]`, 400, "unmarshal-request: "},
		{"invalid renew", "PUT", "/leases/renew", `{"underlay_ip":"10.0.0.1","overlay_subnet":"x","overlay_hardware_addr":"ee:ee:00:00:00:00"}`, 409, "renew-subnet-lease: invalid overlay subnet"},
		{"malformed release", "PUT", "/leases/release", `nope`, 400, "unmarshal-request: "},
		{"bad release ip", "PUT", "/leases/release", `{"underlay_ip":""}`, 400, "release lease: invalid ipv4 address: "},
		{"huge body", "PUT", "/leases/acquire", `{"underlay_ip":"` + strings.Repeat("1", 100<<10) + `"}`, 400, "read-body: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := r.do(t, tt.method, tt.path, tt.body)
			var e struct {
				Error string `json:"error"`
			}
			if status != tt.status || json.Unmarshal([]byte(body), &e) != nil || !strings.HasPrefix(e.Error, tt.errPrefix) {
				t.Fatalf("= %d %s; want %d with error starting %q", status, body, tt.status, tt.errPrefix)
			}
			if !strings.HasPrefix(body, `{"error": "`) {
				t.Fatalf("body %s does not have upstream's error shape", body)
			}
		})
	}

	if status, _ := r.do(t, "GET", "/nope", ""); status != 404 {
		t.Errorf("unknown path = %d, want 404", status)
	}
	if status, _ := r.do(t, "POST", "/leases/acquire", "{}"); status != 405 {
		t.Errorf("wrong method = %d, want 405", status)
	}

	for i := 0; i < 2; i++ {
		if status, body := r.do(t, "PUT", "/leases/release", `{"underlay_ip":"10.244.0.5"}`); status != 200 || body != "{}" {
			t.Fatalf("release %d = %d %s", i, status, body)
		}
	}
	if err := r.client.Release(ctx, "10.244.0.77"); err != nil {
		t.Fatalf("release of unknown lease: %v", err)
	}

	// Health and debug servers answer on loopback without TLS.
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", r.cfg.HealthCheckPort))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(b) != 0 {
		t.Fatalf("health = %d %q", resp.StatusCode, b)
	}
	resp, err = http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", r.cfg.DebugServerPort))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, metric := range []string{"LeasesAcquireRequestCount", "LeasesAcquireRequestTime", "LeasesRenewRequestCount", "http_error", "HealthRequestCount"} {
		if !strings.Contains(string(b), metric) {
			t.Errorf("debug /metrics lacks %s:\n%s", metric, b)
		}
	}
}

func TestMetricsEmitted(t *testing.T) {
	r := startController(t, dbtest.NewConfig(t, sqldb.TypeSQLite), "10.255.0.0/16", 24)
	if _, err := r.client.Acquire(context.Background(), "10.244.0.5", false); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", r.cfg.DebugServerPort)
	deadline := time.Now().Add(10 * time.Second)
	var text string
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		text = string(b)
		if strings.Contains(text, "\ntotalLeases 1\n") && strings.Contains(text, "\nfreeLeases 254\n") {
			for _, m := range []string{"staleLeases 0", "uptime", "DBOpenConnections", "DBQueriesTotal", "DBQueryDurationMax"} {
				if !strings.Contains(text, m) {
					t.Errorf("missing %s in\n%s", m, text)
				}
			}
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("lease gauges never appeared:\n%s", text)
}

func TestTLSIsMutualAndModern(t *testing.T) {
	r := startController(t, dbtest.NewConfig(t, sqldb.TypeSQLite), "10.255.0.0/16", 24)
	mtlstest.CheckMutualTLS(t, r.base+"/leases", mtls.SilkControllerHost)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
