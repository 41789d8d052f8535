package adapter

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// controller is a stand-in for the SDC client.
type controller struct {
	ips   map[string][]string
	err   error
	asked []string
}

func (c *controller) IPs(_ context.Context, name string) ([]string, error) {
	c.asked = append(c.asked, name)
	if c.err != nil {
		return nil, c.err
	}
	return c.ips[name], nil
}

func TestHandler(t *testing.T) {
	const empty = `"Answer":[],"Additional":[],"edns_client_subnet":"0.0.0.0/0"}`
	tests := []struct {
		name     string
		target   string
		sdcErr   error
		wantCode int
		wantBody string
		asks     bool
	}{
		{"A record", "/?name=app.apps.internal.&type=1", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"app.apps.internal.","type":1}],` +
				`"Answer":[{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.1.2"},{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.2.2"}],` +
				`"Additional":[],"edns_client_subnet":"0.0.0.0/0"}`, true},
		{"type defaults to A", "/?name=app.apps.internal.", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"app.apps.internal.","type":1}],` +
				`"Answer":[{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.1.2"},{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.2.2"}],` +
				`"Additional":[],"edns_client_subnet":"0.0.0.0/0"}`, true},
		{"unknown name", "/?name=nope.apps.internal.&type=1", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"nope.apps.internal.","type":1}],` + empty, true},
		{"AAAA", "/?name=app.apps.internal.&type=28", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"app.apps.internal.","type":28}],` + empty, false},
		{"non-numeric type stays valid JSON", "/?name=app.apps.internal.&type=MX", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"app.apps.internal.","type":"MX"}],` + empty, false},
		{"name is escaped", "/?name=a%22b.apps.internal.", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"a\"b.apps.internal.","type":1}],` + empty, true},
		{"missing name", "/?type=1", nil, 400,
			`{"Status":2,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"","type":1}],` + empty, false},
		{"controller failure", "/?name=app.apps.internal.&type=1", errors.New("dial tcp: connection refused"), 500,
			"dial tcp: connection refused", true},
		{"health", "/health", nil, 200, "", false},
		{"any other path is a query", "/whatever?name=app.apps.internal.", nil, 200,
			`{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,"Question":[{"name":"app.apps.internal.","type":1}],` +
				`"Answer":[{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.1.2"},{"name":"app.apps.internal.","type":1,"TTL":0,"data":"10.255.2.2"}],` +
				`"Additional":[],"edns_client_subnet":"0.0.0.0/0"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sdc := &controller{ips: map[string][]string{"app.apps.internal.": {"10.255.1.2", "10.255.2.2"}}, err: tt.sdcErr}
			sender, err := metrics.NewSender(logtest.New(t), Origin, 0)
			if err != nil {
				t.Fatal(err)
			}
			h := lifecycle.MetricsMiddleware(sender, "GetIPs", NewHandler(logtest.New(t), sdc, sender, overlay6.Network{}))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.target, nil))
			body, _ := io.ReadAll(rec.Result().Body)
			if rec.Code != tt.wantCode || string(body) != tt.wantBody {
				t.Errorf("got %d\n%s\nwant %d\n%s", rec.Code, body, tt.wantCode, tt.wantBody)
			}
			if asked := len(sdc.asked) > 0; asked != tt.asks {
				t.Errorf("asked the controller: %v, want %v", asked, tt.asks)
			}
			reg := sender.Registry()
			if n, _ := reg.Counter("GetIPsRequestCount"); n != 1 {
				t.Errorf("GetIPsRequestCount = %d, want 1", n)
			}
			if _, ok := reg.Value("GetIPsRequestTime"); !ok {
				t.Error("no GetIPsRequestTime")
			}
			failures, _ := reg.Counter("DNSRequestFailures")
			if want := tt.sdcErr != nil; (failures == 1) != want {
				t.Errorf("DNSRequestFailures = %d", failures)
			}
		})
	}
}

// TestHandlerLogsWarmUpOnce: while the controller warms up, bosh-dns still
// gets upstream's 500 for every query, but the log has one info line when
// warm-up is first seen and one when it is over, the queries in between
// at debug level; a real failure stays an error.
func TestHandlerLogsWarmUpOnce(t *testing.T) {
	warming := &jsonhttp.StatusError{Status: "500 Internal Server Error", Code: 500, Body: "address table is not warm\n"}
	sdc := &controller{ips: map[string][]string{"app.apps.internal.": {"10.255.1.2"}}}
	log := &lines{}
	logger := lager.NewLogger("bosh-dns-adapter")
	logger.RegisterSink(lager.NewWriterSink(log, lager.DEBUG))
	h := NewHandler(logger, sdc, nil, overlay6.Network{})
	var codes []int
	for _, err := range []error{warming, warming, warming, nil, nil, &jsonhttp.StatusError{Status: "500 Internal Server Error", Code: 500, Body: "boom"}, warming} {
		sdc.err = err
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?name=app.apps.internal.&type=1", nil))
		codes = append(codes, rec.Code)
	}
	if diff := cmp.Diff([]int{500, 500, 500, 200, 200, 500, 500}, codes); diff != "" {
		t.Errorf("answers (-want +got):\n%s", diff)
	}
	want := []string{
		"info bosh-dns-adapter.serve-request.service-discovery-controller-warming-up",
		"debug bosh-dns-adapter.serve-request.service-discovery-controller-warming-up",
		"debug bosh-dns-adapter.serve-request.service-discovery-controller-warming-up",
		"info bosh-dns-adapter.serve-request.service-discovery-controller-warm",
		"debug bosh-dns-adapter.serve-request.success",
		"debug bosh-dns-adapter.serve-request.success",
		"error bosh-dns-adapter.serve-request.could not connect to service discovery controller",
		"info bosh-dns-adapter.serve-request.service-discovery-controller-warming-up",
	}
	if diff := cmp.Diff(want, log.got); diff != "" {
		t.Errorf("log (-want +got):\n%s", diff)
	}
}

// lines records "level message" for each lager line written to it.
type lines struct{ got []string }

func (l *lines) Write(p []byte) (int, error) {
	var line struct {
		Level   lager.LogLevel `json:"log_level"`
		Message string         `json:"message"`
	}
	if err := json.Unmarshal(p, &line); err != nil {
		return 0, err
	}
	l.got = append(l.got, line.Level.String()+" "+line.Message)
	return len(p), nil
}
