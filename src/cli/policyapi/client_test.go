package policyapi_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/cli/policyapi"
	"github.com/netman-release/netman/src/policy"
)

type request struct {
	Method, Path, Query, Body, Authorization, ContentType, Accept, UserAgent string
}

// recorder answers every request with status and body and keeps what it got.
type recorder struct {
	mu       sync.Mutex
	requests []request
	status   int
	body     string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests = append(r.requests, request{
		Method: req.Method, Path: req.URL.Path, Query: req.URL.RawQuery, Body: string(b),
		Authorization: req.Header.Get("Authorization"), ContentType: req.Header.Get("Content-Type"),
		Accept: req.Header.Get("Accept"), UserAgent: req.Header.Get("User-Agent"),
	})
	status, body := r.status, r.body
	r.mu.Unlock()
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func newServer(t *testing.T, status int, body string) (*recorder, *policyapi.Client) {
	t.Helper()
	rec := &recorder{status: status, body: body}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return rec, policyapi.New(srv.URL+"/", nil, "bearer tok", "test-agent")
}

func TestRequests(t *testing.T) {
	single := []policy.Policy{policy.NewPolicy("A", "B", "tcp", 8080, 8080)}
	ranged := []policy.Policy{policy.NewPolicy("A", "B", "udp", 8000, 9000)}
	const v0Body = `{"policies":[{"source":{"id":"A"},"destination":{"id":"B","protocol":"tcp","port":8080}}]}`
	const v1Body = `{"policies":[{"source":{"id":"A"},"destination":{"id":"B","protocol":"udp","ports":{"start":8000,"end":9000}}}]}`
	tests := []struct {
		name string
		call func(context.Context, *policyapi.Client) error
		want request
	}{
		{"create v0", func(ctx context.Context, c *policyapi.Client) error { return c.CreatePoliciesV0(ctx, single) },
			request{Method: "POST", Path: "/networking/v0/external/policies", Body: v0Body, ContentType: "application/json"}},
		{"delete v0", func(ctx context.Context, c *policyapi.Client) error { return c.DeletePoliciesV0(ctx, single) },
			request{Method: "POST", Path: "/networking/v0/external/policies/delete", Body: v0Body, ContentType: "application/json"}},
		{"create v1", func(ctx context.Context, c *policyapi.Client) error { return c.CreatePolicies(ctx, ranged) },
			request{Method: "POST", Path: "/networking/v1/external/policies", Body: v1Body, ContentType: "application/json"}},
		{"delete v1", func(ctx context.Context, c *policyapi.Client) error { return c.DeletePolicies(ctx, ranged) },
			request{Method: "POST", Path: "/networking/v1/external/policies/delete", Body: v1Body, ContentType: "application/json"}},
		{"list v1", func(ctx context.Context, c *policyapi.Client) error { _, err := c.ListPolicies(ctx); return err },
			request{Method: "GET", Path: "/networking/v1/external/policies"}},
		{"list v1 by ids", func(ctx context.Context, c *policyapi.Client) error {
			_, err := c.ListPolicies(ctx, "A", "B")
			return err
		},
			request{Method: "GET", Path: "/networking/v1/external/policies", Query: "id=A,B"}},
		{"list v0 by id", func(ctx context.Context, c *policyapi.Client) error { _, err := c.ListPoliciesV0(ctx, "A"); return err },
			request{Method: "GET", Path: "/networking/v0/external/policies", Query: "id=A"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, c := newServer(t, 200, `{"total_policies":0,"policies":[]}`)
			if err := tt.call(context.Background(), c); err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Authorization, want.Accept, want.UserAgent = "bearer tok", "application/json", "test-agent"
			if diff := cmp.Diff([]request{want}, rec.requests); diff != "" {
				t.Fatalf("requests (-want +got):\n%s", diff)
			}
		})
	}
}

func TestV0RejectsRanges(t *testing.T) {
	rec, c := newServer(t, 200, "{}")
	err := c.CreatePoliciesV0(context.Background(), []policy.Policy{policy.NewPolicy("A", "B", "tcp", 1, 2)})
	if err == nil || len(rec.requests) != 0 {
		t.Fatalf("got %v after %d requests, want an error and no request", err, len(rec.requests))
	}
}

func TestListDecodes(t *testing.T) {
	_, c := newServer(t, 200, `{"total_policies":2,"policies":[`+
		`{"source":{"id":"A"},"destination":{"id":"B","protocol":"tcp","ports":{"start":80,"end":90}}},`+
		`{"source":{"id":"B"},"destination":{"id":"A","protocol":"udp","ports":{"start":53,"end":53}}}]}`)
	got, err := c.ListPolicies(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Policy{policy.NewPolicy("A", "B", "tcp", 80, 90), policy.NewPolicy("B", "A", "udp", 53, 53)}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("policies (-want +got):\n%s", diff)
	}

	_, c = newServer(t, 200, `{"total_policies":1,"policies":[{"source":{"id":"A"},"destination":{"id":"B","protocol":"tcp","port":8080}}]}`)
	got, err = c.ListPoliciesV0(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]policy.Policy{policy.NewPolicy("A", "B", "tcp", 8080, 8080)}, got); diff != "" {
		t.Fatalf("v0 policies (-want +got):\n%s", diff)
	}

	_, c = newServer(t, 200, `not json`)
	if _, err := c.ListPolicies(context.Background()); err == nil {
		t.Fatal("no error for a body that is not JSON")
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		status  int
		body    string
		wantMsg string
		wantErr string
	}{
		{403, `{"error": "one or more applications cannot be found or accessed"}`, "one or more applications cannot be found or accessed",
			"http status 403: one or more applications cannot be found or accessed"},
		{401, `{"error": "failed to verify token with uaa"}`, "failed to verify token with uaa", "http status 401: failed to verify token with uaa"},
		{502, "<html>bad gateway</html>\n", "<html>bad gateway</html>", "http status 502: <html>bad gateway</html>"},
		{500, "", "(empty body)", "http status 500: (empty body)"},
	}
	for _, tt := range tests {
		_, c := newServer(t, tt.status, tt.body)
		err := c.CreatePolicies(context.Background(), []policy.Policy{policy.NewPolicy("A", "B", "tcp", 1, 1)})
		var apiErr *policyapi.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("status %d: got %v, want *policyapi.Error", tt.status, err)
		}
		if apiErr.StatusCode != tt.status || apiErr.Message != tt.wantMsg || err.Error() != tt.wantErr ||
			apiErr.Method != "POST" || !strings.HasSuffix(apiErr.URL, "/networking/v1/external/policies") {
			t.Fatalf("status %d: got %+v (%q)", tt.status, apiErr, err)
		}
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close() // nothing listens there now
	c := policyapi.New("http://"+addr, nil, "bearer tok", "")
	_, err = c.ListPolicies(context.Background())
	var unreachable *policyapi.UnreachableError
	if !errors.As(err, &unreachable) || unreachable.URL != "http://"+addr {
		t.Fatalf("got %v, want an UnreachableError for http://%s", err, addr)
	}
	if !strings.HasPrefix(err.Error(), "cannot reach policy server at http://"+addr+": ") {
		t.Fatalf("message %q", err)
	}
}

func TestSkipSSLValidation(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"total_policies":0,"policies":[]}`)
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	verified := policyapi.New(srv.URL, policyapi.NewHTTPClient(false, nil), "bearer t", "")
	if _, err := verified.ListPolicies(context.Background()); err == nil {
		t.Fatal("a self-signed certificate was accepted without --skip-ssl-validation")
	}
	skipping := policyapi.New(srv.URL, policyapi.NewHTTPClient(true, nil), "bearer t", "")
	if _, err := skipping.ListPolicies(context.Background()); err != nil {
		t.Fatalf("with skip-ssl-validation: %v", err)
	}
}

func TestPrintable(t *testing.T) {
	if got := policyapi.Printable("app\x1b[31m\tname\n✓"); got != "app?[31m?name?✓" {
		t.Errorf("Printable = %q", got)
	}
}
