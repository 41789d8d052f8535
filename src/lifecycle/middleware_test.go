package lifecycle_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagerctx"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
)

func TestMetricsMiddleware(t *testing.T) {
	logger, _ := newTestLogger()
	sender, err := metrics.NewSender(logger, "silk-controller", 0)
	if err != nil {
		t.Fatal(err)
	}
	var sleep time.Duration
	h := lifecycle.MetricsMiddleware(sender, "LeasesAcquire", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(sleep)
		w.WriteHeader(http.StatusCreated)
	}))

	for _, d := range []time.Duration{0, 20 * time.Millisecond} {
		sleep = d
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPut, "/leases/acquire", nil))
		if rec.Code != http.StatusCreated {
			t.Errorf("status = %d, handler's response not passed through", rec.Code)
		}
	}

	reg := sender.Registry()
	if total, _ := reg.Counter("LeasesAcquireRequestCount"); total != 2 {
		t.Errorf("LeasesAcquireRequestCount = %d, want 2", total)
	}
	v, ok := reg.Value("LeasesAcquireRequestTime")
	if !ok || v.Unit != "ms" || v.Value < 20 {
		t.Errorf("LeasesAcquireRequestTime = %+v, want >= 20 ms from the latest request", v)
	}
}

func TestLogRequests(t *testing.T) {
	logger, sink := newTestLogger()
	h := lifecycle.LogRequests(logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lagerctx.FromContext(r.Context()).Info("handling")
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/networking/v1/external/policies?id=a", nil))

	type entry struct {
		Message, Method, Request string
		Level                    lager.LogLevel
	}
	var got []entry
	for _, l := range sink.all() {
		got = append(got, entry{l.Message, l.Data["method"].(string), l.Data["request"].(string), l.LogLevel})
	}
	url := "/networking/v1/external/policies?id=a"
	want := []entry{
		{"test.request.serving", "GET", url, lager.DEBUG},
		{"test.request.handling", "GET", url, lager.INFO},
		{"test.request.done", "GET", url, lager.DEBUG},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("logs (-want +got):\n%s", diff)
	}
}
