package observe

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// agentMetrics is an agent's /metrics with per-app series (the format of
// src/agent/appmetrics): two instances of app b, one of app f.
const agentMetrics = `# HELP netman_app_network_bytes_total Bytes the cell forwarded.
# TYPE netman_app_network_bytes_total counter
netman_app_network_bytes_total{app_guid="b",space_guid="s",org_guid="o",instance_id="0",container_handle="h-b0",direction="in"} 100
netman_app_network_bytes_total{app_guid="b",space_guid="s",org_guid="o",instance_id="1",container_handle="h-b1",direction="in"} 50
netman_app_network_bytes_total{app_guid="f",space_guid="s",org_guid="o",instance_id="0",container_handle="h-f",direction="in"} 7
netman_app_network_connections_total{app_guid="b",space_guid="s",org_guid="o",instance_id="0",container_handle="h-b0",direction="in",verdict="denied"} 3
netman_app_network_connections_total{app_guid="b",space_guid="s",org_guid="o",instance_id="1",container_handle="say \"hi\"",direction="in",verdict="allowed"} 2
netman_app_metrics_series 24
uptime 30
`

func TestAppCounters(t *testing.T) {
	for _, tc := range []struct {
		app  string
		want map[string]float64
	}{
		{"b", map[string]float64{"bytes in": 150, "connections in denied": 3, "connections in allowed": 2}},
		{"f", map[string]float64{"bytes in": 7}},
		{"x", map[string]float64{}},
	} {
		if diff := cmp.Diff(tc.want, AppCounters(agentMetrics, tc.app)); diff != "" {
			t.Errorf("app %s (-want +got):\n%s", tc.app, diff)
		}
	}
}

type fakeMetricsCell struct {
	name, text string
	err        error
}

func (c fakeMetricsCell) Name() string                            { return c.name }
func (c fakeMetricsCell) Metrics(context.Context) (string, error) { return c.text, c.err }

func TestCellMetrics(t *testing.T) {
	noAppMetrics := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(noAppMetrics.Close)
	served := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != PathMetrics {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(agentMetrics))
	}))
	t.Cleanup(served.Close)
	for _, tc := range []struct {
		name     string
		cells    CellMetrics
		want     map[string]float64
		problems int
		err      bool
	}{
		{"summed over cells", CellMetrics{fakeMetricsCell{name: "c1", text: agentMetrics}, NewAgentDebug(served.URL, time.Second)},
			map[string]float64{"bytes in": 300, "connections in denied": 6, "connections in allowed": 4}, 0, false},
		{"an agent without per-app metrics adds nothing", CellMetrics{NewAgentDebug(noAppMetrics.URL, time.Second), fakeMetricsCell{name: "c2", text: agentMetrics}},
			map[string]float64{"bytes in": 150, "connections in denied": 3, "connections in allowed": 2}, 0, false},
		{"a failing cell is a problem", CellMetrics{fakeMetricsCell{name: "c1", err: errors.New("refused")}, fakeMetricsCell{name: "c2", text: agentMetrics}},
			map[string]float64{"bytes in": 150, "connections in denied": 3, "connections in allowed": 2}, 1, false},
		{"every cell failing is an error", CellMetrics{fakeMetricsCell{name: "c1", err: errors.New("refused")}}, map[string]float64{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cells.Activity(context.Background(), "b")
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got.Counters); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if len(got.Problems) != tc.problems || got.Source != AppMetricsSource {
				t.Errorf("source %q problems %q, want %d", got.Source, got.Problems, tc.problems)
			}
		})
	}
}
