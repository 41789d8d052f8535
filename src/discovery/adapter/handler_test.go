package adapter

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/netman-release/netman/src/daemon"
	"github.com/netman-release/netman/src/metrics"
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
			h := daemon.MetricsMiddleware(sender, "GetIPs", NewHandler(logtest.New(t), sdc, sender))
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
