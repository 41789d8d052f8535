package adapter

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// TestAAAAOverTheHTTPAPI asks the adapter's HTTP API, over the real client
// and a stand-in service-discovery-controller behind mutual TLS, for A and
// AAAA records of an app. With ipv6_overlay_network the AAAA answer is the
// IPv6 overlay address of each IPv4 answer (a non-IPv4 answer has none);
// without it AAAA has no records and the controller is not asked, as
// upstream; A answers are the same either way.
func TestAAAAOverTheHTTPAPI(t *testing.T) {
	sdc, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/registration/app.apps.internal." {
			_, _ = w.Write([]byte(`{"Hosts":[],"env":""}`))
			return
		}
		_, _ = w.Write([]byte(`{"Hosts":[{"ip_address":"10.255.7.12","port":0},{"ip_address":"10.255.9.3"},{"ip_address":"not-an-ip"}],"env":""}`))
	})
	type record struct {
		Type uint16
		Data string
	}
	ask := func(t *testing.T, h http.Handler, query string) (status int, rcode int, records []record) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?"+query, nil))
		var resp Response
		if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
			t.Fatalf("%s: %v: %s", query, err, rec.Body)
		}
		for _, a := range resp.Answer {
			if a.Name != "app.apps.internal." && a.Name != "nope.apps.internal." {
				t.Errorf("answer for %q", a.Name)
			}
			records = append(records, record{a.Type, a.Data})
		}
		slices.SortFunc(records, func(a, b record) int { return strings.Compare(a.Data, b.Data) })
		return rec.Code, resp.Status, records
	}
	aRecords := []record{{1, "10.255.7.12"}, {1, "10.255.9.3"}, {1, "not-an-ip"}}
	for _, tt := range []struct {
		name string
		ipv6 overlay6.Network
		aaaa []record
	}{
		{"dual stack", overlay6.MustParse(overlay6.DefaultNetwork), []record{{28, "fd73:696c:6b::aff:70c"}, {28, "fd73:696c:6b::aff:903"}}},
		{"other /96", overlay6.MustParse("fd00:1:2::/96"), []record{{28, "fd00:1:2::aff:70c"}, {28, "fd00:1:2::aff:903"}}},
		{"IPv4 only", overlay6.Network{}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHandler(logtest.New(t), sdc, nil, tt.ipv6)
			code, rcode, got := ask(t, h, "name=app.apps.internal.&type=28")
			if code != 200 || rcode != 0 {
				t.Errorf("AAAA: HTTP %d, rcode %d", code, rcode)
			}
			if diff := cmp.Diff(tt.aaaa, got); diff != "" {
				t.Errorf("AAAA answers (-want +got):\n%s", diff)
			}
			if _, _, got := ask(t, h, "name=app.apps.internal.&type=1"); !cmp.Equal(aRecords, got) {
				t.Errorf("A answers: %v", got)
			}
			if _, _, got := ask(t, h, "name=nope.apps.internal.&type=28"); len(got) != 0 {
				t.Errorf("AAAA for an unknown name: %v", got)
			}
		})
	}
}

// TestAAAAControllerAskedOnlyWithDualStack: an IPv4-only adapter answers
// AAAA without asking the controller (upstream's "unsupported record
// type"); a dual-stack one asks it once per query.
func TestAAAAControllerAskedOnlyWithDualStack(t *testing.T) {
	for _, tt := range []struct {
		ipv6 overlay6.Network
		asks int
	}{{overlay6.Network{}, 0}, {overlay6.MustParse(overlay6.DefaultNetwork), 1}} {
		sdc := &controller{ips: map[string][]string{"app.apps.internal.": {"10.255.1.2"}}}
		h := NewHandler(logtest.New(t), sdc, nil, tt.ipv6)
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/?name=app.apps.internal.&type=28", nil))
		if len(sdc.asked) != tt.asks {
			t.Errorf("ipv6 %q: controller asked %d times, want %d", tt.ipv6, len(sdc.asked), tt.asks)
		}
	}
}

// TestConfigIPv6OverlayNetwork: ipv6_overlay_network is read and
// validated with overlay6's rules, its problem named by the key.
func TestConfigIPv6OverlayNetwork(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "..", "config", "bosh-dns-adapter.json"))
	if err != nil {
		t.Fatal(err)
	}
	var base map[string]any
	if err := json.Unmarshal(example, &base); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		value   string
		problem string
		want    string
	}{
		{"", "", ""},
		{"fd73:696c:6b::/96", "", "fd73:696c:6b::/96"},
		{"fd73:696c:6b::/64", "ipv6_overlay_network: invalid ipv6 overlay network", ""},
		{"10.0.0.0/8", "ipv6_overlay_network: invalid ipv6 overlay network", ""},
	} {
		base["ipv6_overlay_network"] = tt.value
		b, _ := json.Marshal(base)
		path := filepath.Join(t.TempDir(), "c.json")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := LoadConfig(path)
		if tt.problem == "" {
			if err != nil && strings.Contains(err.Error(), "ipv6_overlay_network") {
				t.Errorf("%q: %v", tt.value, err)
			}
			if got := c.ipv6().String(); got != tt.want {
				t.Errorf("%q: network %q, want %q", tt.value, got, tt.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.problem) {
			t.Errorf("%q: error %v, want %q", tt.value, err, tt.problem)
		}
	}
}
