package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/appmetrics"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// planeStub counts what it was synced with, 100 bytes in each.
type planeStub struct{ synced []appmetrics.Instance }

func (p *planeStub) Sync(_ context.Context, want []appmetrics.Instance) error {
	p.synced = want
	return nil
}

func (p *planeStub) Read(context.Context) (map[string]appmetrics.Counts, error) {
	out := map[string]appmetrics.Counts{}
	for _, in := range p.synced {
		out[in.Handle] = appmetrics.Counts{InBytes: 100}
	}
	return out, nil
}

// TestMetricsHandlerServesAppSeries: with app metrics on, the debug
// server's /metrics has the registry's metrics and then the series of
// the containers in the metadata store.
func TestMetricsHandlerServesAppSeries(t *testing.T) {
	ctx := context.Background()
	store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	if err := store.Add(ctx, "h1", "10.255.1.2", map[string]any{"app_id": "app-a", "space_id": "space-1", "org_id": "org-1", "policy_group_id": "app-a"}); err != nil {
		t.Fatal(err)
	}
	sender, err := metrics.NewSender(nil, "vxlan-policy-agent", 0)
	if err != nil {
		t.Fatal(err)
	}
	sender.SendDuration(MetricEnforce, 3)
	plane := &planeStub{}
	apps := newAppMetrics(lager.NewLogger("test"), store, plane, 0)
	if err := apps.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(metricsHandler(sender.Registry(), apps))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	if ct := resp.Header.Get("Content-Type"); ct != metrics.ContentType {
		t.Errorf("content type %q", ct)
	}
	reg := strings.Index(text, "# TYPE "+MetricEnforce+" gauge")
	app := strings.Index(text, appmetrics.FamilyBytes+`{app_guid="app-a",space_guid="space-1",org_guid="org-1",instance_id="",container_handle="h1",direction="in"} 100`)
	if reg < 0 || app < 0 || reg > app {
		t.Errorf("want the registry then the app series, got:\n%s", text)
	}
	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestRemoveAppMetricsPrivileged: an agent starting with app metrics off
// removes the counting rules a previous run left, on each backend.
func TestRemoveAppMetricsPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	want := []appmetrics.Instance{{Handle: "h1", IP: "10.255.1.2", AppID: "app-a"}}
	for _, backend := range []Backend{BackendIPTables, BackendNFTables} {
		t.Run(string(backend), func(t *testing.T) {
			ns := netnstest.New(t, "vpam")
			do := func(fn func() error) {
				t.Helper()
				if err := ns.Do(fn); err != nil {
					t.Fatal(err)
				}
			}
			d := iptables.New(iptables.Config{LockFile: filepath.Join(t.TempDir(), "iptables.lock")})
			var k *nft.Kernel
			do(func() (err error) { k, err = nft.New(); return err })
			do(func() error { return appMetricsPlane(backend, d).Sync(ctx, want) })
			do(func() error { return removeAppMetrics(ctx, false, backend, d, k) })
			var st *iptables.State
			do(func() (err error) { st, err = d.Save(ctx, iptables.Mangle); return err })
			if st.Has(appmetrics.ChainSeen) || st.Has(appmetrics.ChainPost) {
				t.Errorf("iptables counting chains left:\n%s", st)
			}
			var names map[string]bool
			do(func() (err error) { names, err = k.ChainNames(ctx); return err })
			if names[appmetrics.ChainFirst] || names[appmetrics.ChainLast] {
				t.Errorf("nftables counting chains left: %v", names)
			}
			// Nothing left: a second start writes nothing and does not fail.
			do(func() error { return removeAppMetrics(ctx, false, backend, d, k) })
		})
	}
}
