package boshdns

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/maintest"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/dns/dnsmessage"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/standin/routeemitter"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// fakeAdapter answers as bosh-dns-adapter does from a name → IPs map, and
// records the queries it got.
type fakeAdapter struct {
	mu      sync.Mutex
	ips     map[string][]string // fqdn → IPs; absent: no answers
	fail    map[string]bool     // fqdn → answer 500
	queries []string            // "name type"
}

func (f *fakeAdapter) set(name string, ips ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ips[name] = ips
}

func (f *fakeAdapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name, qtype := r.URL.Query().Get("name"), r.URL.Query().Get("type")
	f.mu.Lock()
	f.queries = append(f.queries, name+" "+qtype)
	ips, fail := f.ips[strings.ToLower(name)], f.fail[name]
	f.mu.Unlock()
	if fail {
		http.Error(w, "Received non successful response from server: 500 Internal Server Error", http.StatusInternalServerError)
		return
	}
	type answer struct {
		Name string `json:"name"`
		Type int    `json:"type"`
		TTL  int    `json:"TTL"`
		Data string `json:"data"`
	}
	answers := []answer{}
	if qtype == "1" {
		for _, ip := range ips {
			answers = append(answers, answer{name, 1, 0, ip})
		}
	}
	_ = json.NewEncoder(w).Encode(map[string]any{
		"Status": 0, "TC": false, "RD": false, "RA": false, "AD": false, "CD": false,
		"Question": []map[string]any{{"name": name, "type": 1}}, "Answer": answers, "Additional": []any{},
		"edns_client_subnet": "0.0.0.0/0",
	})
}

func (f *fakeAdapter) asked() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.queries...)
}

// startDNS runs `netman-lab dns` on a free loopback port with handlers for
// apps.internal answered by adapterURL, and returns its address.
func startDNS(t *testing.T, adapterURL string) string {
	t.Helper()
	b, err := json.Marshal(Handlers(adapterURL, "apps.internal"))
	if err != nil {
		t.Fatal(err)
	}
	handlers := filepath.Join(t.TempDir(), "handlers.json")
	if err := os.WriteFile(handlers, b, 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", ports.Free(t, "127.0.0.1"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, []string{"--listen", addr, "--handlers", handlers}, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("dns: %v", err)
		}
	})
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		_, err := Resolver{Server: addr, Timeout: 100 * time.Millisecond}.LookupA(ctx, "up.invalid")
		if errors.Is(err, ErrNoSuchHost) {
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("dns on %s not up: %v", addr, err)
		}
	}
}

func addrs(ips []netip.Addr) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// TestDNSFrontEnd: A queries under apps.internal are answered from the
// adapter (as bosh-dns asks it), other types and unknown names are empty
// NOERROR, names outside the domain NXDOMAIN without asking, and adapter
// failures SERVFAIL.
func TestDNSFrontEnd(t *testing.T) {
	fake := &fakeAdapter{ips: map[string][]string{}, fail: map[string]bool{"broken.apps.internal.": true}}
	fake.set("backend.apps.internal.", "10.255.7.2", "10.255.9.2")
	adapter := httptest.NewServer(fake)
	defer adapter.Close()
	server := startDNS(t, adapter.URL)
	ctx := context.Background()
	r := Resolver{Server: server}

	ips, err := r.LookupA(ctx, "Backend.Apps.Internal")
	if diff := cmp.Diff([]string{"10.255.7.2", "10.255.9.2"}, addrs(ips)); err != nil || diff != "" {
		t.Errorf("backend: %v (-want +got)\n%s", err, diff)
	}
	if _, err := r.LookupA(ctx, "nosuch.apps.internal"); !errors.Is(err, ErrNoSuchHost) {
		t.Errorf("unknown name: %v, want no such host", err)
	}
	if _, err := r.LookupA(ctx, "example.com"); !errors.Is(err, ErrNoSuchHost) {
		t.Errorf("outside the domain: %v, want no such host", err)
	}
	if _, err := r.LookupA(ctx, "broken.apps.internal"); err == nil || !strings.Contains(err.Error(), "SERVFAIL") {
		t.Errorf("adapter failing: %v, want a server failure", err)
	}

	// The raw answers: rcode, flags, records.
	ask := func(network, name string, qtype dnsmessage.Type) *dnsmessage.Message {
		t.Helper()
		q, err := (&dnsmessage.Message{
			Header:    dnsmessage.Header{ID: 77, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: qtype, Class: dnsmessage.ClassINET}},
		}).Pack()
		if err != nil {
			t.Fatal(err)
		}
		m, err := exchange(ctx, network, server, q, time.Second)
		if err != nil {
			t.Fatalf("%s %s %v: %v", network, name, qtype, err)
		}
		return m
	}
	for _, network := range []string{"udp", "tcp"} {
		m := ask(network, "backend.apps.internal.", dnsmessage.TypeA)
		if m.ID != 77 || !m.Response || !m.RecursionDesired || !m.RecursionAvailable || !m.Authoritative || m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 2 {
			t.Errorf("%s A: %+v", network, m)
		}
		for _, a := range m.Answers {
			if a.Header.TTL != 0 || a.Header.Name.String() != "backend.apps.internal." {
				t.Errorf("%s A record %+v: want TTL 0 for the name asked", network, a.Header)
			}
		}
	}
	if m := ask("udp", "backend.apps.internal.", dnsmessage.TypeAAAA); m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
		t.Errorf("AAAA: %+v, want NOERROR without records", m)
	}
	if m := ask("udp", "example.com.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("example.com: %v, want NXDOMAIN", m.RCode)
	}
	for _, q := range fake.asked() {
		if strings.Contains(q, "example.com") {
			t.Errorf("the adapter was asked %q", q)
		}
	}
	if got := fake.asked(); len(got) == 0 || got[0] != "Backend.Apps.Internal. 1" {
		t.Errorf("adapter queries %q: want the name as asked with a trailing dot, type 1", got)
	}
}

// TestDNSFrontEndTruncates: an answer too long for UDP comes back
// truncated, and the resolver gets it whole over TCP.
func TestDNSFrontEndTruncates(t *testing.T) {
	fake := &fakeAdapter{ips: map[string][]string{}}
	var many []string
	for i := range 60 {
		many = append(many, fmt.Sprintf("10.255.%d.2", i))
	}
	fake.set("big.apps.internal.", many...)
	adapter := httptest.NewServer(fake)
	defer adapter.Close()
	server := startDNS(t, adapter.URL)
	q, _ := (&dnsmessage.Message{Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName("big.apps.internal."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}}}).Pack()
	m, err := exchange(context.Background(), "udp", server, q, time.Second)
	if err != nil || !m.Truncated || len(m.Answers) != 0 {
		t.Fatalf("udp: %v %+v, want truncated", err, m)
	}
	ips, err := Resolver{Server: server}.LookupA(context.Background(), "big.apps.internal")
	if err != nil || len(ips) != 60 {
		t.Errorf("tcp retry: %v, %d addresses", err, len(ips))
	}
}

// TestDNSThroughAdapterAndController: the front end answers from a real
// bosh-dns-adapter and service-discovery-controller, fed by `netman-lab
// route-emitter` over NATS; the emitter takes its interval from the
// controller's greeting.
func TestDNSThroughAdapterAndController(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	nats := discoverytest.StartNATS(t, discoverytest.NATSConfig{})
	cfg := discoverytest.ControllerConfig(t, files, nats)
	cfg.ResumePruningDelaySeconds = 1
	discoverytest.StartController(t, cfg)
	adapter := discoverytest.StartAdapter(t, discoverytest.AdapterConfig(t, files, cfg.Port))
	server := startDNS(t, adapter.URL())

	ctx, cancel := context.WithCancel(context.Background())
	out := &maintest.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- routeemitter.Run(ctx, []string{"--nats", nats.URL(),
			"--instance", "backend.apps.internal,0,10.255.7.2,guid-b", "--instance", "backend.apps.internal,1,10.255.9.2,guid-b"}, out)
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("route-emitter: %v", err)
		}
	}()
	lookup := func(name string, want ...string) {
		t.Helper()
		var ips []netip.Addr
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			ips, err = Resolver{Server: server}.LookupA(ctx, name)
			if len(ips) == len(want) {
				break
			}
		}
		got := addrs(ips)
		if diff := cmp.Diff(want, got, cmpSorted); diff != "" {
			t.Errorf("%s: %v (-want +got)\n%s", name, err, diff)
		}
	}
	lookup("backend.apps.internal", "10.255.7.2", "10.255.9.2")
	lookup("1.backend.apps.internal", "10.255.9.2")
	if _, err := (Resolver{Server: server}).LookupA(ctx, "frontend.apps.internal"); !errors.Is(err, ErrNoSuchHost) {
		t.Errorf("unregistered name: %v", err)
	}
	if s := out.String(); !strings.Contains(s, "registering every 1s") || !strings.Contains(s, "registered backend.apps.internal, 1.backend.apps.internal → 10.255.9.2") {
		t.Errorf("route-emitter log:\n%s", s)
	}
}

var cmpSorted = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// TestLoadDNSHandlers reads what the bosh-dns-adapter job renders.
func TestLoadDNSHandlers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "handlers.json")
	body := `[{"domain":"apps.internal.","cache":{"enabled":false},"source":{"type":"http","url":"http://127.0.0.1:8053"}},
	          {"domain":"Other.Internal","source":{"type":"dns","recursors":["10.0.0.2"]}},
	          {"domain":"mesh.internal","source":{"type":"http","url":"http://127.0.0.1:8053"}}]`
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	hs, err := LoadHandlers(path)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range hs {
		got = append(got, h.Domain+" "+h.Source.URL)
	}
	if diff := cmp.Diff([]string{"apps.internal. http://127.0.0.1:8053", "mesh.internal. http://127.0.0.1:8053"}, got); diff != "" {
		t.Errorf("(-want +got)\n%s", diff)
	}
	f := &FrontEnd{Handlers: hs}
	for name, want := range map[string]bool{"apps.internal.": true, "a.b.APPS.internal.": true, "xapps.internal.": false, "internal.": false} {
		if got := f.handler(name) != nil; got != want {
			t.Errorf("handler(%q) = %v, want %v", name, got, want)
		}
	}
	if err := os.WriteFile(path, []byte(`[]`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadHandlers(path); err == nil {
		t.Error("no handlers: want an error")
	}
}
