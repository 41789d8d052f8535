package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRouter(t *testing.T) {
	echo := func(tag string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, tag+" "+r.PathValue("version"))
		})
	}
	rt := Router{
		{Method: http.MethodGet, Path: "/", Handler: echo("root")},
		{Method: http.MethodGet, Path: "/networking/:version/external/policies", Handler: echo("list")},
		{Method: http.MethodPost, Path: "/networking/:version/external/policies", Handler: echo("create")},
		{Method: http.MethodGet, Path: "/networking/:version", Handler: echo("version")},
	}
	tests := []struct {
		method, path string
		code         int
		body, allow  string
	}{
		{"GET", "/", 200, "root ", ""},
		{"GET", "/networking/v1/external/policies", 200, "list v1", ""},
		{"POST", "/networking/v0/external/policies", 200, "create v0", ""},
		{"GET", "/networking//external/policies", 200, "list ", ""}, // an empty segment matches, as upstream
		{"GET", "/networking/v1", 200, "version v1", ""},
		{"DELETE", "/networking/v1/external/policies", 405, "Method Not Allowed\n", "GET, POST"},
		{"HEAD", "/", 405, "", "GET"},
		{"GET", "/networking/v1/external/policies/", 404, "404 page not found\n", ""},
		{"GET", "/networking/v1/x/external/policies", 404, "404 page not found\n", ""},
		{"GET", "//", 404, "404 page not found\n", ""},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		rt.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
		if rec.Code != tt.code || (tt.method != "HEAD" && rec.Body.String() != tt.body) || rec.Header().Get("Allow") != tt.allow {
			t.Errorf("%s %s = %d %q (Allow %q), want %d %q (Allow %q)", tt.method, tt.path, rec.Code, rec.Body.String(), rec.Header().Get("Allow"), tt.code, tt.body, tt.allow)
		}
	}
}
