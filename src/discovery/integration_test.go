package discovery_test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
)

// stack is NATS, a controller, an adapter and a route emitter, wired as on
// a cell and the scheduler VM.
type stack struct {
	files   *mtlstest.Files
	nats    *discoverytest.NATS
	sdc     *discoverytest.Controller
	adapter *discoverytest.Adapter
	emitter *discoverytest.Emitter
}

func newStack(t *testing.T, adjust func(*sdcontroller.Config)) *stack {
	t.Helper()
	s := &stack{files: mtlstest.NewTestFiles(t)}
	s.nats = discoverytest.StartNATS(t, discoverytest.NATSConfig{User: "nats", Password: "p@ss/word"})
	cfg := discoverytest.ControllerConfig(t, s.files, s.nats)
	if adjust != nil {
		adjust(&cfg)
	}
	s.sdc = discoverytest.StartController(t, cfg)
	s.adapter = discoverytest.StartAdapter(t, discoverytest.AdapterConfig(t, s.files, cfg.Port))
	s.emitter = newEmitter(t, s.nats, true)
	return s
}

func newEmitter(t *testing.T, n *discoverytest.NATS, reRegister bool) *discoverytest.Emitter {
	t.Helper()
	e, err := discoverytest.NewEmitter(n.URL(), reRegister)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// consistently fails the test if f returns an error during d.
func consistently(t *testing.T, d time.Duration, f func() error) {
	t.Helper()
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

// resolvesTo checks the adapter's answer for name, in any order.
func resolvesTo(a *discoverytest.Adapter, name string, want ...string) func() error {
	return func() error {
		got, err := a.IPs(name)
		if err != nil {
			return err
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(want))
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s resolves to %v, want %v", name, got, want)
		}
		return nil
	}
}

func instances(hostname string, ips ...string) []discoverytest.Instance {
	out := make([]discoverytest.Instance, len(ips))
	for i, ip := range ips {
		out[i] = discoverytest.Instance{Hostname: hostname, Index: i, IP: ip, App: "app-guid"}
	}
	return out
}

func TestRegistrationsFlowToAdapterAnswers(t *testing.T) {
	s := newStack(t, nil)
	app := instances("app.apps.internal", "10.255.1.2", "10.255.2.2", "10.255.3.2")
	if err := s.emitter.Register(app...); err != nil {
		t.Fatal(err)
	}
	if err := s.emitter.Register(instances("Other.Apps.Internal", "10.255.9.9")...); err != nil {
		t.Fatal(err)
	}

	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal.", "10.255.1.2", "10.255.2.2", "10.255.3.2"))
	for _, tt := range []struct {
		name string
		want []string
	}{
		{"1.app.apps.internal.", []string{"10.255.2.2"}},
		{"0.APP.apps.internal", []string{"10.255.1.2"}},
		{"APP.APPS.INTERNAL.", []string{"10.255.1.2", "10.255.2.2", "10.255.3.2"}},
		{"other.apps.internal.", []string{"10.255.9.9"}},
		{"unknown.apps.internal.", nil},
	} {
		if err := resolvesTo(s.adapter, tt.name, tt.want...)(); err != nil {
			t.Error(err)
		}
	}

	// The adapter echoes the name as asked, TTL 0.
	status, body, err := s.adapter.Query("1.app.apps.internal.", "1")
	if err != nil || status != http.StatusOK {
		t.Fatalf("query: %d %v", status, err)
	}
	want := `{"Status":0,"TC":false,"RD":false,"RA":false,"AD":false,"CD":false,` +
		`"Question":[{"name":"1.app.apps.internal.","type":1}],` +
		`"Answer":[{"name":"1.app.apps.internal.","type":1,"TTL":0,"data":"10.255.2.2"}],` +
		`"Additional":[],"edns_client_subnet":"0.0.0.0/0"}`
	if string(body) != want {
		t.Errorf("body:\n got %s\nwant %s", body, want)
	}

	if err := s.emitter.Unregister(app[1]); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal.", "10.255.1.2", "10.255.3.2"))
	if err := resolvesTo(s.adapter, "1.app.apps.internal.")(); err != nil {
		t.Error(err)
	}
}

func TestAdapterShufflesAnswers(t *testing.T) {
	s := newStack(t, nil)
	ips := make([]string, 8)
	for i := range ips {
		ips[i] = fmt.Sprintf("10.255.%d.2", i)
	}
	if err := s.emitter.Register(instances("app.apps.internal", ips...)...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", ips...))
	orders := map[string]bool{}
	for range 20 {
		got, err := s.adapter.IPs("app.apps.internal")
		if err != nil {
			t.Fatal(err)
		}
		orders[strings.Join(got, ",")] = true
	}
	if len(orders) < 2 {
		t.Errorf("20 answers all in the same order: %v", orders)
	}
}

func TestMalformedMessagesAreIgnored(t *testing.T) {
	s := newStack(t, nil)
	for _, m := range []struct{ subject, body string }{
		{discovery.SubjectRegister, `not json`},
		{discovery.SubjectRegister, `{"host":"","uris":["bad.apps.internal"]}`},
		{discovery.SubjectRegister, `{"host":"10.0.0.1","uris":[]}`},
		{discovery.SubjectUnregister, `{"host":"10.0.0.1"}`},
	} {
		if err := s.emitter.Publish(m.subject, []byte(m.body)); err != nil {
			t.Fatal(err)
		}
	}
	// Upstream's minimal message, without port or timestamps.
	if err := s.emitter.Publish(discovery.SubjectRegister, []byte(`{"host": "192.168.0.1","uris":["app-id.internal.local."]}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app-id.internal.local.", "192.168.0.1"))
	if err := resolvesTo(s.adapter, "bad.apps.internal")(); err != nil {
		t.Error(err)
	}
	if !strings.Contains(s.sdc.Logs.String(), "AddressMessageHandler received a malformed register message") {
		t.Error("malformed register message not logged")
	}
	if !strings.Contains(s.sdc.Logs.String(), "AddressMessageHandler received a malformed unregister message") {
		t.Error("malformed unregister message not logged")
	}
}

func TestStaleEntriesDisappear(t *testing.T) {
	s := newStack(t, func(c *sdcontroller.Config) { c.StalenessThresholdSeconds = 1 })
	stale := newEmitter(t, s.nats, false)
	if err := stale.Register(instances("gone.apps.internal", "10.255.5.5")...); err != nil {
		t.Fatal(err)
	}
	if err := s.emitter.Register(instances("kept.apps.internal", "10.255.6.6")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "gone.apps.internal", "10.255.5.5"))

	go s.emitter.EmitEvery(t.Context(), 200*time.Millisecond)

	// staleness + pruning interval + slack, as upstream's test allows.
	eventually(t, 4*time.Second, resolvesTo(s.adapter, "gone.apps.internal"))
	if err := resolvesTo(s.adapter, "kept.apps.internal", "10.255.6.6")(); err != nil {
		t.Error(err)
	}
}

func TestNATSOutagePausesPruning(t *testing.T) {
	s := newStack(t, func(c *sdcontroller.Config) {
		c.StalenessThresholdSeconds = 1
		c.ResumePruningDelaySeconds = 1
	})
	quiet := newEmitter(t, s.nats, false) // never re-registers
	if err := quiet.Register(instances("app.apps.internal", "10.255.1.2")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2"))

	s.nats.Stop()
	// Well past staleness + pruning interval: still answered.
	consistently(t, 3500*time.Millisecond, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2"))
	if !strings.Contains(s.sdc.Logs.String(), "pruning-pause") {
		t.Error("pause not logged")
	}

	if err := s.nats.Start(); err != nil {
		t.Fatal(err)
	}
	// Reconnected: pruning resumes after the resume delay and the entry,
	// which nobody refreshed, goes.
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal"))
	if !strings.Contains(s.sdc.Logs.String(), "ReconnectHandler reconnected to nats server") {
		t.Error("reconnect not logged")
	}
}

func TestNATSOutageThenReRegistrationKeepsRoutes(t *testing.T) {
	s := newStack(t, func(c *sdcontroller.Config) {
		c.StalenessThresholdSeconds = 1
		c.ResumePruningDelaySeconds = 1
	})
	if err := s.emitter.Register(instances("app.apps.internal", "10.255.1.2")...); err != nil {
		t.Fatal(err)
	}
	go s.emitter.EmitEvery(t.Context(), 300*time.Millisecond)
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2"))
	s.nats.Stop()
	time.Sleep(2500 * time.Millisecond)
	if err := s.nats.Start(); err != nil {
		t.Fatal(err)
	}
	// The controller announces itself again and waits the resume delay
	// (one emit interval) before pruning, so the emitter's next round
	// refreshes the entries that aged during the outage.
	eventually(t, 5*time.Second, func() error {
		if n := strings.Count(s.sdc.Logs.String(), "start-message-published"); n < 2 {
			return fmt.Errorf("%d start messages, want a second one after reconnecting", n)
		}
		return nil
	})
	consistently(t, 2500*time.Millisecond, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2"))
}

func TestControllerRestartRecoversTableFromReRegistrations(t *testing.T) {
	s := newStack(t, func(c *sdcontroller.Config) { c.ResumePruningDelaySeconds = 7 })
	if err := s.emitter.Register(instances("app.apps.internal", "10.255.1.2", "10.255.2.2")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2", "10.255.2.2"))

	// route_emitter greets at start-up to learn the interval.
	greeting, err := s.emitter.Greet(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if greeting.MinimumRegisterIntervalInSeconds != 7 || greeting.PruneThresholdInSeconds != 120 ||
		!strings.HasPrefix(greeting.ID, "0-") || len(greeting.ID) != len("0-")+36 || greeting.Host == "" {
		t.Errorf("greeting = %+v", greeting)
	}

	if err := s.sdc.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	status, body, err := s.adapter.Query("app.apps.internal", "1")
	if err != nil || status != http.StatusInternalServerError {
		t.Errorf("with the controller down: %d %s %v, want 500", status, body, err)
	}

	// A new controller on the same port starts empty; its start message
	// makes the emitter register everything again.
	cfg := s.sdc.Config
	cfg.Index = "1"
	restarted := discoverytest.StartController(t, cfg)
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2", "10.255.2.2"))
	starts := s.emitter.Starts()
	last := starts[len(starts)-1]
	if !strings.HasPrefix(last.ID, "1-") || last.ID == greeting.ID {
		t.Errorf("start message after restart = %+v", last)
	}
	if !strings.Contains(restarted.Logs.String(), "service-discovery.start-message-published") {
		t.Error("start message not logged")
	}
}

func TestWarmUp(t *testing.T) {
	s := newStack(t, func(c *sdcontroller.Config) { c.WarmDurationSeconds = 1 })
	client := discoverytest.Client(t, s.files)
	resp, err := client.Get(s.sdc.URL() + "/v1/registration/app.apps.internal.")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || string(body) != "address table is not warm\n" {
		t.Errorf("cold lookup = %d %q, want 500 %q", resp.StatusCode, body, "address table is not warm\n")
	}
	// The adapter retries through the warm-up (about 1.8 s of retries).
	if err := s.emitter.Register(instances("app.apps.internal", "10.255.1.2")...); err != nil {
		t.Fatal(err)
	}
	if err := resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2")(); err != nil {
		t.Errorf("adapter during warm-up: %v", err)
	}
}

func TestRoutesListing(t *testing.T) {
	s := newStack(t, nil)
	if err := s.emitter.Register(instances("b.apps.internal", "10.255.2.1", "10.255.2.2")...); err != nil {
		t.Fatal(err)
	}
	if err := s.emitter.Register(instances("a.apps.internal", "10.255.1.1")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "b.apps.internal", "10.255.2.1", "10.255.2.2"))
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "a.apps.internal", "10.255.1.1"))

	resp, err := discoverytest.Client(t, s.files).Get(s.sdc.URL() + "/routes")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Addresses []struct {
			Hostname string   `json:"hostname"`
			IPs      []string `json:"ips"`
		} `json:"addresses"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"a.apps.internal.":   {"10.255.1.1"},
		"0.a.apps.internal.": {"10.255.1.1"},
		"b.apps.internal.":   {"10.255.2.1", "10.255.2.2"},
		"0.b.apps.internal.": {"10.255.2.1"},
		"1.b.apps.internal.": {"10.255.2.2"},
	}
	gotMap := map[string][]string{}
	for _, a := range got.Addresses {
		gotMap[a.Hostname] = a.IPs
	}
	if diff := cmp.Diff(want, gotMap); diff != "" {
		t.Errorf("/routes (-want +got):\n%s", diff)
	}
}

// The controller's TLS 1.2 suites are upstream's "internal service
// defaults" (ECDHE-RSA AES-256-GCM and AES-128-GCM), so this checks the
// same contract as mtlstest.CheckMutualTLS with a suite outside that pair.
func TestControllerRequiresMutualTLS(t *testing.T) {
	s := newStack(t, nil)
	url := s.sdc.URL() + "/v1/registration/app.apps.internal."
	pem := mtlstest.Material(t)
	good, err := mtls.ClientConfigFromPEM(pem.ClientCert, pem.ClientKey, pem.CA, mtls.WithServerName(mtls.ServiceDiscoveryControllerHost))
	if err != nil {
		t.Fatal(err)
	}
	otherCA, err := mtls.ClientConfigFromPEM(pem.OtherClientCert, pem.OtherClientKey, pem.CA, mtls.WithServerName(mtls.ServiceDiscoveryControllerHost))
	if err != nil {
		t.Fatal(err)
	}
	noCert := good.Clone()
	noCert.Certificates = nil
	tls11 := good.Clone()
	tls11.MinVersion, tls11.MaxVersion = tls.VersionTLS10, tls.VersionTLS11
	tls12 := func(suite uint16) *tls.Config {
		c := good.Clone()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{suite}
		return c
	}
	for _, tt := range []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"good client", good, true},
		{"TLS 1.2 AES-256-GCM", tls12(tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384), true},
		{"TLS 1.2 AES-128-GCM", tls12(tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256), true},
		{"TLS 1.2 CHACHA20", tls12(tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256), false},
		{"client certificate from another CA", otherCA, false},
		{"no client certificate", noCert, false},
		{"TLS 1.1", tls11, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tt.cfg}}
			resp, err := c.Get(url)
			if resp != nil {
				resp.Body.Close()
			}
			if tt.ok && (err != nil || resp.StatusCode != http.StatusOK) {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok && err == nil {
				t.Fatalf("accepted with status %d", resp.StatusCode)
			}
		})
	}
}

func TestAdapterRefusesControllerFromAnotherCA(t *testing.T) {
	s := newStack(t, nil)
	cfg := discoverytest.AdapterConfig(t, s.files, s.sdc.Config.Port)
	cfg.CACert = s.files.OtherCAFile
	a := discoverytest.StartAdapter(t, cfg)
	status, body, err := a.Query("app.apps.internal", "1")
	if err != nil || status != http.StatusInternalServerError || !strings.Contains(string(body), "certificate") {
		t.Errorf("answer = %d %q %v, want 500 naming the certificate problem", status, body, err)
	}
}

func TestControllerOverTLSNATS(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{TLS: discoverytest.NATSServerTLS(t, files)})
	cfg := discoverytest.ControllerConfig(t, files, n)
	cfg.Nats.Hosts = []sdcontroller.NatsHost{{Hostname: "nats.invalid", Port: n.Port()}, {Hostname: "127.0.0.1", Port: n.Port()}}
	cfg.Nats.TLSEnabled = true
	cfg.Nats.CACerts, cfg.Nats.CertChain, cfg.Nats.PrivateKey = files.CAFile, files.ClientCert, files.ClientKey
	sdc := discoverytest.StartController(t, cfg)
	a := discoverytest.StartAdapter(t, discoverytest.AdapterConfig(t, files, cfg.Port))

	e, err := discoverytest.NewEmitter("tls://"+strings.TrimPrefix(n.URL(), "nats://"), true, natsTLS(t, files))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Register(instances("app.apps.internal", "10.255.1.2")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(a, "app.apps.internal", "10.255.1.2"))
	if strings.Contains(sdc.Logs.String(), "p@ss") {
		t.Error("credentials logged")
	}
}

func TestControllerFailsWithoutNATS(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{})
	cfg := discoverytest.ControllerConfig(t, files, n)
	n.Stop()
	logger, sink := discovery.NewLogger(sdcontroller.Origin, io.Discard)
	err := sdcontroller.Run(t.Context(), logger, sink, cfg)
	if err == nil || !strings.Contains(err.Error(), "unable to create nats connection: nats: no servers available for connection") {
		t.Fatalf("Run = %v", err)
	}
}

func TestLogLevelServers(t *testing.T) {
	s := newStack(t, nil)
	for _, d := range []struct {
		name string
		url  string
		logs *discoverytest.Logs
	}{
		{"controller", s.sdc.LogLevelURL(), s.sdc.Logs},
		{"adapter", s.adapter.LogLevelURL(), s.adapter.Logs},
	} {
		t.Run(d.name, func(t *testing.T) {
			for _, tt := range []struct {
				body string
				code int
				log  string
			}{
				{"debug", http.StatusNoContent, "Log level set to DEBUG"},
				{"info", http.StatusNoContent, "Log level set to INFO"},
				{"error", http.StatusBadRequest, "Invalid log level requested: `error`. Skipping."},
				{"fatal", http.StatusBadRequest, "Invalid log level requested: `fatal`. Skipping."},
			} {
				resp, err := http.Post(d.url+"/log-level", "text/plain", strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tt.code {
					t.Errorf("%s: status %d, want %d", tt.body, resp.StatusCode, tt.code)
				}
				if !strings.Contains(d.logs.String(), tt.log) {
					t.Errorf("%s: log lacks %q", tt.body, tt.log)
				}
			}
		})
	}

	// At debug the controller logs every lookup; at info it does not.
	lookup := func() {
		if _, err := s.adapter.IPs("app.apps.internal"); err != nil {
			t.Fatal(err)
		}
	}
	lookup()
	if strings.Contains(s.sdc.Logs.String(), "HTTPServer access") {
		t.Error("access logged at info")
	}
	resp, err := http.Post(s.sdc.LogLevelURL()+"/log-level", "text/plain", strings.NewReader("debug"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	lookup()
	if !strings.Contains(s.sdc.Logs.String(), `"serviceKey":"app.apps.internal"`) {
		t.Error("access not logged at debug")
	}
}

func TestMetrics(t *testing.T) {
	s := newStack(t, nil)
	if err := s.emitter.Register(instances("app.apps.internal", "10.255.1.2")...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, resolvesTo(s.adapter, "app.apps.internal", "10.255.1.2"))
	scrape := func(url string) string {
		resp, err := http.Get(url + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// The emitter runs every second (metrics_emit_seconds 1).
	eventually(t, 5*time.Second, func() error {
		m := scrape(s.sdc.LogLevelURL())
		for _, name := range []string{"uptime", "dnsRequest", "maxRouteMessageTimePerInterval", "registerMessagesReceived",
			"addressTableLookupTime", "RegistrationRequestTime", "RegistrationRequestCount"} {
			if !strings.Contains(m, name) {
				return fmt.Errorf("controller /metrics lacks %s:\n%s", name, m)
			}
		}
		return nil
	})

	if err := s.sdc.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.adapter.Query("app.apps.internal", "1"); err != nil {
		t.Fatal(err)
	}
	m := scrape(s.adapter.LogLevelURL())
	for _, name := range []string{"uptime", "GetIPsRequestTime", "GetIPsRequestCount", "DNSRequestFailures"} {
		if !strings.Contains(m, name) {
			t.Errorf("adapter /metrics lacks %s:\n%s", name, m)
		}
	}
}

func natsTLS(t *testing.T, files *mtlstest.Files) nats.Option {
	return nats.Secure(files.ClientConfig(t, mtls.InternalServiceDefaults()))
}
