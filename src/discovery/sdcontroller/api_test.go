package sdcontroller

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func newTestAPI(t *testing.T, warm bool) (*addresstable.Table, *metrics.Sender, *Recorder, http.Handler) {
	t.Helper()
	table := addresstable.New(logtest.New(t), time.Minute, 0)
	if warm {
		table.SetWarm()
	}
	sender, err := metrics.NewSender(logtest.New(t), Origin, 0)
	if err != nil {
		t.Fatal(err)
	}
	recorder := NewRecorder(nil)
	return table, sender, recorder, NewAPI(logtest.New(t), table, sender, recorder).Handler()
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestRegistration(t *testing.T) {
	table, sender, recorder, h := newTestAPI(t, true)
	table.Add([]string{"app.apps.internal", "0.app.apps.internal"}, "10.255.1.2")
	table.Add([]string{"app.apps.internal", "1.app.apps.internal"}, "10.255.2.2")

	tests := []struct {
		path string
		want string
	}{
		{"/v1/registration/app.apps.internal.", `{"hosts":[` +
			`{"ip_address":"10.255.1.2","last_check_in":"","port":0,"revision":"","service":"","service_repo_name":"","tags":{}},` +
			`{"ip_address":"10.255.2.2","last_check_in":"","port":0,"revision":"","service":"","service_repo_name":"","tags":{}}],` +
			`"env":"","service":""}`},
		{"/v1/registration/1.APP.apps.internal", `{"hosts":[` +
			`{"ip_address":"10.255.2.2","last_check_in":"","port":0,"revision":"","service":"","service_repo_name":"","tags":{}}],` +
			`"env":"","service":""}`},
		{"/v1/registration/unknown.apps.internal.", `{"hosts":[],"env":"","service":""}`},
	}
	for _, tt := range tests {
		code, body := get(t, h, tt.path)
		if code != http.StatusOK || body != tt.want {
			t.Errorf("GET %s = %d\n%s\nwant 200\n%s", tt.path, code, body, tt.want)
		}
	}
	reg := sender.Registry()
	if n, _ := reg.Counter("RegistrationRequestCount"); n != 3 {
		t.Errorf("RegistrationRequestCount = %d, want 3", n)
	}
	for _, name := range []string{"RegistrationRequestTime", "addressTableLookupTime"} {
		if v, ok := reg.Value(name); !ok || v.Unit != "ms" {
			t.Errorf("%s = %+v, %v", name, v, ok)
		}
	}
	if got := dnsRequests(t, recorder); got != 3 {
		t.Errorf("dnsRequest = %v, want 3", got)
	}
}

func dnsRequests(t *testing.T, r *Recorder) float64 {
	for _, s := range r.Sources() {
		if s.Name == "dnsRequest" {
			v, _ := s.Get(t.Context())
			return v
		}
	}
	t.Fatal("no dnsRequest source")
	return 0
}

func TestRegistrationWhileCold(t *testing.T) {
	table, _, recorder, h := newTestAPI(t, false)
	table.Add([]string{"app.apps.internal"}, "10.255.1.2")
	code, body := get(t, h, "/v1/registration/app.apps.internal.")
	if code != http.StatusInternalServerError || body != "address table is not warm\n" {
		t.Errorf("cold = %d %q", code, body)
	}
	if got := dnsRequests(t, recorder); got != 0 {
		t.Errorf("cold lookups counted: %v", got)
	}
}

func TestRoutes(t *testing.T) {
	table, _, _, h := newTestAPI(t, false) // /routes does not wait for warmth
	code, body := get(t, h, "/routes")
	if code != http.StatusOK || body != `{"addresses":[]}` {
		t.Errorf("empty /routes = %d %s", code, body)
	}
	table.Add([]string{"b.apps.internal"}, "10.0.0.2")
	table.Add([]string{"a.apps.internal"}, "10.0.0.1")
	table.Add([]string{"b.apps.internal"}, "10.0.0.3")
	_, body = get(t, h, "/routes")
	var got struct {
		Addresses []addresstable.Address `json:"addresses"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	want := []addresstable.Address{{Hostname: "a.apps.internal.", IPs: []string{"10.0.0.1"}}, {Hostname: "b.apps.internal.", IPs: []string{"10.0.0.2", "10.0.0.3"}}}
	if diff := cmp.Diff(want, got.Addresses); diff != "" {
		t.Errorf("/routes (-want +got):\n%s", diff)
	}
}

func TestUnknownPath(t *testing.T) {
	_, _, _, h := newTestAPI(t, true)
	if code, _ := get(t, h, "/v2/whatever"); code != http.StatusNotFound {
		t.Errorf("unknown path = %d, want 404", code)
	}
}

func TestRecorder(t *testing.T) {
	now := time.Unix(1000, 0)
	r := NewRecorder(func() time.Time { return now })
	get := func(name string) float64 {
		for _, s := range r.Sources() {
			if s.Name == name {
				v, err := s.Get(t.Context())
				if err != nil {
					t.Fatal(err)
				}
				return v
			}
		}
		t.Fatalf("no source %s", name)
		return 0
	}
	r.RecordTransit(0) // unknown: ignored
	r.RecordTransit(now.Add(-250 * time.Millisecond).UnixNano())
	r.RecordTransit(now.Add(-1500 * time.Millisecond).UnixNano())
	r.RecordTransit(now.Add(-10 * time.Millisecond).UnixNano())
	r.RecordRegister()
	r.RecordRegister()
	r.RecordDNSRequest()

	if got := get("maxRouteMessageTimePerInterval"); got != 1500 {
		t.Errorf("max transit = %v ms, want 1500", got)
	}
	if got := get("maxRouteMessageTimePerInterval"); got != 0 {
		t.Errorf("max transit not reset: %v", got)
	}
	if got := get("registerMessagesReceived"); got != 2 {
		t.Errorf("registers = %v, want 2", got)
	}
	if got := get("registerMessagesReceived"); got != 2 {
		t.Errorf("registers reset: %v, want cumulative 2", got)
	}
	if got := get("dnsRequest"); got != 1 {
		t.Errorf("dnsRequest = %v, want 1", got)
	}
	if got := get("dnsRequest"); got != 0 {
		t.Errorf("dnsRequest not reset: %v", got)
	}
	var names, units []string
	for _, s := range r.Sources() {
		names = append(names, s.Name)
		units = append(units, s.Unit)
	}
	if diff := cmp.Diff([]string{"dnsRequest", "maxRouteMessageTimePerInterval", "registerMessagesReceived"}, names); diff != "" {
		t.Errorf("sources (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"request", "ms", "ms"}, units); diff != "" {
		t.Errorf("units (-want +got):\n%s", diff)
	}
}
