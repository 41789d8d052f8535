package adapter

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
)

// newServer serves h over mutual TLS with the test server certificate and
// returns a client of it whose sleeps are recorded instead of slept.
func newServer(t *testing.T, h http.HandlerFunc) (*Client, *[]time.Duration) {
	t.Helper()
	files := mtlstest.NewTestFiles(t)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = files.ServerConfig(t, mtls.InternalServiceDefaults())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	c := NewClient(srv.URL, files.ClientConfig(t, mtls.WithServerName(mtls.ServiceDiscoveryControllerHost)))
	t.Cleanup(c.CloseIdleConnections)
	var sleeps []time.Duration
	c.sleep = func(_ context.Context, d time.Duration) error { sleeps = append(sleeps, d); return nil }
	c.jitter = func() time.Duration { return 60 * time.Millisecond }
	return c, &sleeps
}

func TestClientParsesAndShuffles(t *testing.T) {
	var path string
	c, sleeps := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		path = r.URL.Path
		// Upstream's client reads "Hosts" case-insensitively.
		_, _ = w.Write([]byte(`{"Hosts":[{"ip_address":"10.0.0.1","port":0},{"ip_address":"10.0.0.2"},{"ip_address":"10.0.0.3"},{"ip_address":"10.0.0.4"},{"ip_address":"10.0.0.5"}],"env":""}`))
	})
	orders := map[string]bool{}
	for range 30 {
		ips, err := c.IPs(t.Context(), "app.apps.internal.")
		if err != nil {
			t.Fatal(err)
		}
		orders[strings.Join(ips, ",")] = true
		if diff := cmp.Diff([]string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5"}, slices.Sorted(slices.Values(ips))); diff != "" {
			t.Fatalf("ips (-want +got):\n%s", diff)
		}
	}
	if len(orders) < 2 {
		t.Errorf("never shuffled: %v", orders)
	}
	if path != "/v1/registration/app.apps.internal." {
		t.Errorf("path = %s", path)
	}
	if len(*sleeps) != 0 {
		t.Errorf("slept %v on success", *sleeps)
	}
}

func TestClientRetriesNon200(t *testing.T) {
	var calls atomic.Int32
	c, sleeps := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "address table is not warm", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte(`{"hosts":[{"ip_address":"10.0.0.1"}]}`))
	})
	ips, err := c.IPs(t.Context(), "app.apps.internal.")
	if err != nil || !slices.Equal(ips, []string{"10.0.0.1"}) {
		t.Fatalf("IPs = %v, %v", ips, err)
	}
	if diff := cmp.Diff([]time.Duration{60 * time.Millisecond, 560 * time.Millisecond}, *sleeps); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
}

func TestClientGivesUpAfterFourAttempts(t *testing.T) {
	var calls atomic.Int32
	c, sleeps := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	_, err := c.IPs(t.Context(), "app.apps.internal.")
	var status *jsonhttp.StatusError
	if !errors.As(err, &status) || err.Error() != "Received non successful response from server: 503 Service Unavailable" {
		t.Fatalf("err = %v", err)
	}
	if calls.Load() != 4 {
		t.Errorf("%d attempts, want 4", calls.Load())
	}
	if diff := cmp.Diff([]time.Duration{60 * time.Millisecond, 560 * time.Millisecond, 1060 * time.Millisecond}, *sleeps); diff != "" {
		t.Errorf("sleeps (-want +got):\n%s", diff)
	}
}

func TestClientDoesNotRetryTransportErrors(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	files := mtlstest.NewTestFiles(t)
	c := NewClient("https://"+addr, files.ClientConfig(t))
	var sleeps int
	c.sleep = func(context.Context, time.Duration) error { sleeps++; return nil }
	if _, err := c.IPs(t.Context(), "app.apps.internal."); err == nil {
		t.Fatal("no error from a closed port")
	}
	if sleeps != 0 {
		t.Errorf("retried a transport error %d times", sleeps)
	}
}

func TestClientBadJSON(t *testing.T) {
	c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"hosts":`)) })
	if _, err := c.IPs(t.Context(), "x"); err == nil {
		t.Fatal("bad JSON accepted")
	}
}

func TestJitter(t *testing.T) {
	c := NewClient("https://127.0.0.1:1", nil)
	for range 1000 {
		if j := c.jitter(); j < 50*time.Millisecond || j > 124*time.Millisecond {
			t.Fatalf("jitter %v outside 50–124 ms", j)
		}
	}
}

// TestClientTellsWarmUp: the controller's 500 "address table is not warm"
// (http.Error's body, with its newline) is warm-up; any other 500 is not.
func TestClientTellsWarmUp(t *testing.T) {
	for _, tc := range []struct {
		name    string
		code    int
		body    string
		warming bool
	}{
		{"warming up", http.StatusInternalServerError, "address table is not warm", true},
		{"another 500", http.StatusInternalServerError, "database is locked", false},
		{"the text on another status", http.StatusServiceUnavailable, "address table is not warm", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, tc.body, tc.code) })
			_, err := c.IPs(t.Context(), "app.apps.internal.")
			var status *jsonhttp.StatusError
			if !errors.As(err, &status) {
				t.Fatalf("err = %v, want a StatusError", err)
			}
			if Warming(err) != tc.warming || status.Code != tc.code {
				t.Errorf("Warming() = %v, Code %d; want %v, %d (%+v)", Warming(err), status.Code, tc.warming, tc.code, status)
			}
		})
	}
}
