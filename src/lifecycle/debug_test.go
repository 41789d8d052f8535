package lifecycle_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
)

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
	return rec.Code, rec.Body.String()
}

func TestDebugHandlerLogLevel(t *testing.T) {
	tests := []struct {
		name      string
		method    string
		body      string
		wantCode  int
		wantLevel lager.LogLevel
		wantBody  string // substring
	}{
		{"get returns current level", http.MethodGet, "", http.StatusOK, lager.INFO, "info"},
		{"post debug", http.MethodPost, "debug", http.StatusOK, lager.DEBUG, ""},
		{"post upper case", http.MethodPost, "ERROR", http.StatusOK, lager.ERROR, ""},
		{"put numeric fatal", http.MethodPut, "3", http.StatusOK, lager.FATAL, ""},
		{"post numeric debug", http.MethodPost, "0", http.StatusOK, lager.DEBUG, ""},
		{"post with trailing newline", http.MethodPost, "debug\n", http.StatusOK, lager.DEBUG, ""},
		{"post mixed case", http.MethodPost, "Fatal", http.StatusOK, lager.FATAL, ""},
		{"bad level", http.MethodPost, "verbose", http.StatusBadRequest, lager.INFO, `unknown log level "verbose"`},
		{"empty body", http.MethodPost, "", http.StatusBadRequest, lager.INFO, "unknown log level"},
		{"out of range number", http.MethodPut, "4", http.StatusBadRequest, lager.INFO, `"4"`},
		{"oversized body", http.MethodPost, strings.Repeat("d", 4096), http.StatusBadRequest, lager.INFO, "too large"},
		{"other methods", http.MethodDelete, "debug", http.StatusMethodNotAllowed, lager.INFO, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
			h := lifecycle.DebugHandler(sink, nil)
			code, body := do(t, h, tt.method, "/log-level", tt.body)
			if code != tt.wantCode {
				t.Errorf("status = %d, want %d (body %q)", code, tt.wantCode, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body = %q, want it to contain %q", body, tt.wantBody)
			}
			if got := sink.GetMinLevel(); got != tt.wantLevel {
				t.Errorf("level = %v, want %v", got, tt.wantLevel)
			}
		})
	}
}

func TestDebugHandlerLogLevelRoundTrip(t *testing.T) {
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	h := lifecycle.DebugHandler(sink, nil)
	if code, _ := do(t, h, http.MethodPost, "/log-level", "debug"); code != http.StatusOK {
		t.Fatalf("POST = %d", code)
	}
	if code, body := do(t, h, http.MethodGet, "/log-level", ""); code != http.StatusOK || body != "debug" {
		t.Errorf("GET = %d %q, want 200 debug", code, body)
	}
}

func TestDebugHandlerProfileRates(t *testing.T) {
	t.Cleanup(func() {
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	})
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	h := lifecycle.DebugHandler(sink, nil)

	tests := []struct {
		path     string
		method   string
		body     string
		wantCode int
		wantFrac int // checked for the mutex fraction, which can be read back
	}{
		{"/mutex-profile-fraction", http.MethodPost, "7", http.StatusOK, 7},
		{"/mutex-profile-fraction", http.MethodPut, " 3\n", http.StatusOK, 3},
		{"/mutex-profile-fraction", http.MethodPost, "-5", http.StatusOK, 0},
		{"/mutex-profile-fraction", http.MethodPost, "lots", http.StatusBadRequest, 0},
		{"/mutex-profile-fraction", http.MethodPost, "", http.StatusBadRequest, 0},
		{"/mutex-profile-fraction", http.MethodGet, "", http.StatusMethodNotAllowed, 0},
		{"/block-profile-rate", http.MethodPost, "1", http.StatusOK, -1},
		{"/block-profile-rate", http.MethodPut, "0", http.StatusOK, -1},
		{"/block-profile-rate", http.MethodPost, "-1", http.StatusOK, -1},
		{"/block-profile-rate", http.MethodPost, "1.5", http.StatusBadRequest, -1},
		{"/block-profile-rate", http.MethodGet, "", http.StatusMethodNotAllowed, -1},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.body, func(t *testing.T) {
			code, body := do(t, h, tt.method, tt.path, tt.body)
			if code != tt.wantCode {
				t.Fatalf("status = %d, want %d (body %q)", code, tt.wantCode, body)
			}
			if code == http.StatusBadRequest && !strings.Contains(body, "want an integer") {
				t.Errorf("400 body %q is not a clear message", body)
			}
			if tt.wantFrac >= 0 {
				if got := runtime.SetMutexProfileFraction(-1); got != tt.wantFrac {
					t.Errorf("mutex profile fraction = %d, want %d", got, tt.wantFrac)
				}
			}
		})
	}
}

func TestDebugHandlerPprof(t *testing.T) {
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	srv := httptest.NewServer(lifecycle.DebugHandler(sink, nil))
	defer srv.Close()
	tests := []struct {
		path     string
		wantBody string
	}{
		{"/debug/pprof/", "goroutine"},
		{"/debug/pprof/goroutine?debug=1", "goroutine profile"},
		{"/debug/pprof/cmdline", "lifecycle.test"},
		{"/debug/pprof/symbol", "num_symbols"},
		{"/debug/pprof/trace?seconds=0.05", ""},
		{"/debug/pprof/profile?seconds=1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body := get(t, srv.Client(), srv.URL+tt.path)
			if code != http.StatusOK {
				t.Fatalf("status = %d (body %.200q)", code, body)
			}
			if !strings.Contains(body, tt.wantBody) {
				t.Errorf("body %.200q does not contain %q", body, tt.wantBody)
			}
			if tt.wantBody == "" && len(body) == 0 {
				t.Error("empty profile")
			}
		})
	}
}

func TestDebugHandlerMetrics(t *testing.T) {
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)

	if code, _ := do(t, lifecycle.DebugHandler(sink, nil), http.MethodGet, "/metrics", ""); code != http.StatusNotFound {
		t.Errorf("without registry: status = %d, want 404", code)
	}

	reg := metrics.NewRegistry()
	reg.SetValue("uptime", 12, "seconds")
	reg.AddCounter("renewSuccess", 2)
	rec := httptest.NewRecorder()
	lifecycle.DebugHandler(sink, reg).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != metrics.ContentType {
		t.Errorf("Content-Type = %q", ct)
	}
	want := "# HELP renewSuccess renewSuccess\n# TYPE renewSuccess counter\nrenewSuccess 2\n" +
		"# HELP uptime uptime (seconds)\n# TYPE uptime gauge\nuptime 12\n"
	if rec.Body.String() != want {
		t.Errorf("body = %q, want %q", rec.Body.String(), want)
	}
}

func TestDebugHandlerUnknownPath(t *testing.T) {
	sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
	if code, _ := do(t, lifecycle.DebugHandler(sink, nil), http.MethodGet, "/nope", ""); code != http.StatusNotFound {
		t.Errorf("status = %d, want 404", code)
	}
}
