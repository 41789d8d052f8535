package metrics_test

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/metrics"
)

func TestRegistryStoresLatestValuesAndTotals(t *testing.T) {
	var r metrics.Registry // zero value is usable
	r.SetValue("uptime", 1, "seconds")
	r.SetValue("uptime", 2, "seconds")
	r.SetValue("totalLeases", 7, "")
	if got := r.AddCounter("renewSuccess", 1); got != 1 {
		t.Errorf("first AddCounter total = %d, want 1", got)
	}
	if got := r.AddCounter("renewSuccess", 4); got != 5 {
		t.Errorf("second AddCounter total = %d, want 5", got)
	}

	v, ok := r.Value("uptime")
	if !ok || v != (metrics.Value{Name: "uptime", Value: 2, Unit: "seconds"}) {
		t.Errorf("Value(uptime) = %+v, %v", v, ok)
	}
	if _, ok := r.Value("missing"); ok {
		t.Error("Value(missing) found")
	}
	if total, ok := r.Counter("renewSuccess"); !ok || total != 5 {
		t.Errorf("Counter(renewSuccess) = %d, %v", total, ok)
	}
	if _, ok := r.Counter("missing"); ok {
		t.Error("Counter(missing) found")
	}

	values, counters := r.Snapshot()
	wantValues := []metrics.Value{{Name: "totalLeases", Value: 7}, {Name: "uptime", Value: 2, Unit: "seconds"}}
	if diff := cmp.Diff(wantValues, values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]metrics.Counter{{Name: "renewSuccess", Total: 5}}, counters); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

func TestRegistryConcurrentUse(t *testing.T) {
	r := metrics.NewRegistry()
	const workers, perWorker = 8, 500
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWorker {
				r.AddCounter("requests", 1)
				r.SetValue(fmt.Sprintf("v%d", w), float64(i), "ms")
				if i%50 == 0 {
					_ = r.WritePrometheus(io.Discard)
				}
			}
		}()
	}
	wg.Wait()
	if total, _ := r.Counter("requests"); total != workers*perWorker {
		t.Errorf("total = %d, want %d", total, workers*perWorker)
	}
}

func TestWritePrometheus(t *testing.T) {
	tests := []struct {
		name     string
		values   []metrics.Value
		counters []metrics.Counter
		want     string
	}{
		{name: "empty", want: ""},
		{
			name: "gauges and counters sorted together",
			values: []metrics.Value{
				{Name: "uptime", Value: 42, Unit: "seconds"},
				{Name: "iptablesEnforceTime", Value: 12.5, Unit: "ms"},
				{Name: "freeLeases", Value: 254},
			},
			counters: []metrics.Counter{{Name: "renewSuccess", Total: 3}, {Name: "convergeFailure", Total: 0}},
			want: `# HELP convergeFailure convergeFailure
# TYPE convergeFailure counter
convergeFailure 0
# HELP freeLeases freeLeases
# TYPE freeLeases gauge
freeLeases 254
# HELP iptablesEnforceTime iptablesEnforceTime (ms)
# TYPE iptablesEnforceTime gauge
iptablesEnforceTime 12.5
# HELP renewSuccess renewSuccess
# TYPE renewSuccess counter
renewSuccess 3
# HELP uptime uptime (seconds)
# TYPE uptime gauge
uptime 42
`,
		},
		{
			name: "names are sanitized, help keeps the original",
			values: []metrics.Value{
				{Name: "db.open-connections", Value: 3},
				{Name: "9lives", Value: 9, Unit: "cats"},
			},
			want: `# HELP _9lives 9lives (cats)
# TYPE _9lives gauge
_9lives 9
# HELP db_open_connections db.open-connections
# TYPE db_open_connections gauge
db_open_connections 3
`,
		},
		{
			name: "collisions keep one family",
			values: []metrics.Value{
				{Name: "a.b", Value: 1},
				{Name: "a_b", Value: 2},
			},
			counters: []metrics.Counter{{Name: "a-b", Total: 5}},
			want: `# HELP a_b a-b
# TYPE a_b counter
a_b 5
`,
		},
		{
			name: "special floats and help escaping",
			values: []metrics.Value{
				{Name: "inf", Value: math.Inf(1)},
				{Name: "nan", Value: math.NaN()},
				{Name: "neg", Value: math.Inf(-1), Unit: "a\\b\nc"},
				{Name: "small", Value: 0.000123},
				{Name: "big", Value: 1e21},
			},
			want: `# HELP big big
# TYPE big gauge
big 1e+21
# HELP inf inf
# TYPE inf gauge
inf +Inf
# HELP nan nan
# TYPE nan gauge
nan NaN
# HELP neg neg (a\\b\nc)
# TYPE neg gauge
neg -Inf
# HELP small small
# TYPE small gauge
small 0.000123
`,
		},
		{
			name:   "empty names are skipped",
			values: []metrics.Value{{Name: "", Value: 1}},
			want:   "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := metrics.NewRegistry()
			for _, v := range tt.values {
				r.SetValue(v.Name, v.Value, v.Unit)
			}
			for _, c := range tt.counters {
				r.AddCounter(c.Name, c.Total)
			}
			var buf bytes.Buffer
			if err := r.WritePrometheus(&buf); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, buf.String()); diff != "" {
				t.Errorf("output (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSanitizeName(t *testing.T) {
	tests := map[string]string{
		"uptime":             "uptime",
		"DBQueriesTotal":     "DBQueriesTotal",
		"a:b_c":              "a:b_c",
		"x.y-z/w":            "x_y_z_w",
		"0abc":               "_0abc",
		"a0":                 "a0",
		"sp ace":             "sp_ace",
		"":                   "",
		"caf\u00e9":          "caf__",
		"http_error":         "http_error",
		"LeasesIndexRequest": "LeasesIndexRequest",
	}
	for in, want := range tests {
		if got := metrics.SanitizeName(in); got != want {
			t.Errorf("sanitizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestHandler(t *testing.T) {
	r := metrics.NewRegistry()
	r.SetValue("uptime", 5, "seconds")
	srv := httptest.NewServer(r.Handler())
	defer srv.Close()

	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != metrics.ContentType {
		t.Errorf("Content-Type = %q, want %q", ct, metrics.ContentType)
	}
	want := "# HELP uptime uptime (seconds)\n# TYPE uptime gauge\nuptime 5\n"
	if diff := cmp.Diff(want, string(body)); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}

	resp, err = http.Post(srv.URL, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST status = %d, want 405", resp.StatusCode)
	}
}
