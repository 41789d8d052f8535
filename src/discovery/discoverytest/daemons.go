package discoverytest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/netman-release/netman/src/standin/routeemitter"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/adapter"
	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// Logs collects a daemon's log lines and copies them to the test log.
type Logs struct {
	tb   testing.TB
	mu   sync.Mutex
	buf  bytes.Buffer
	done bool
}

func newLogs(tb testing.TB) *Logs {
	l := &Logs{tb: tb}
	tb.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *Logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		if _, bench := l.tb.(*testing.B); !bench {
			l.tb.Log(strings.TrimRight(string(p), "\n"))
		}
	}
	return len(p), nil
}

// String returns everything logged so far.
func (l *Logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// ControllerConfig is a controller config for tests: the mtlstest server
// certificate, NATS at n, free loopback ports, a long staleness threshold,
// pruning every second, no warm-up and no resume delay. Adjust before
// StartController.
func ControllerConfig(tb testing.TB, files *mtlstest.Files, n *NATS) sdcontroller.Config {
	user, pass := n.Credentials()
	return sdcontroller.Config{
		Address:    "127.0.0.1",
		Port:       strconv.Itoa(ports.Free(tb, "127.0.0.1")),
		Nats:       sdcontroller.NatsConfig{Hosts: []sdcontroller.NatsHost{{Hostname: n.Host(), Port: n.Port()}}, User: user, Pass: pass},
		Index:      "0",
		ServerCert: files.ServerCert, ServerKey: files.ServerKey, CACert: files.CAFile,
		MetronPort:                3457,
		LogLevelAddress:           "127.0.0.1",
		LogLevelPort:              ports.Free(tb, "127.0.0.1"),
		StalenessThresholdSeconds: 120,
		PruningIntervalSeconds:    1,
		MetricsEmitSeconds:        1,
		ResumePruningDelaySeconds: 0,
		WarmDurationSeconds:       0,
		ReadHeaderTimeout:         discovery.Duration(30 * time.Second),
	}
}

// Controller is a service-discovery-controller running in-process.
type Controller struct {
	Config sdcontroller.Config
	// Table is the controller's address table.
	Table *addresstable.Table
	// Logs are its log lines.
	Logs *Logs

	cancel context.CancelFunc
	done   chan error
	stop   sync.Once
	err    error
}

// StartController runs a controller with cfg until the test ends (or Stop)
// and returns once every member has started. NATS reconnects are retried
// every 50 ms so that outage tests are quick.
func StartController(tb testing.TB, cfg sdcontroller.Config, opts ...sdcontroller.Option) *Controller {
	tb.Helper()
	logs := newLogs(tb)
	logger, sink := discovery.NewLogger(sdcontroller.Origin, logs)
	started := make(chan *addresstable.Table, 1)
	opts = append([]sdcontroller.Option{
		sdcontroller.WithNATSOptions(routeemitter.ReconnectQuickly()...),
		sdcontroller.WithStarted(func(t *addresstable.Table) { started <- t }),
	}, opts...)
	ctx, cancel := context.WithCancel(context.Background())
	c := &Controller{Config: cfg, Logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- sdcontroller.Run(ctx, logger, sink, cfg, opts...) }()
	select {
	case c.Table = <-started:
	case err := <-c.done:
		cancel()
		tb.Fatalf("controller did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		tb.Fatal("controller did not start within 20s")
	}
	tb.Cleanup(func() { _ = c.Stop() })
	return c
}

// Stop stops the controller and returns Run's result.
func (c *Controller) Stop() error {
	c.stop.Do(func() {
		c.cancel()
		c.err = <-c.done
	})
	return c.err
}

// URL is the controller's https://127.0.0.1:<port>.
func (c *Controller) URL() string { return "https://127.0.0.1:" + c.Config.Port }

// LogLevelURL is the controller's log-level server base URL.
func (c *Controller) LogLevelURL() string {
	return fmt.Sprintf("http://%s:%d", c.Config.LogLevelAddress, c.Config.LogLevelPort)
}

// Client returns an HTTP client with the mtlstest client certificate that
// verifies the controller as service-discovery-controller.service.cf.internal.
func Client(tb testing.TB, files *mtlstest.Files) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: files.ClientConfig(tb, mtls.WithServerName(mtls.ServiceDiscoveryControllerHost)),
	}}
}

// AdapterConfig is an adapter config for tests: the mtlstest client
// certificate, the controller on 127.0.0.1:sdcPort and free loopback ports.
func AdapterConfig(tb testing.TB, files *mtlstest.Files, sdcPort string) adapter.Config {
	return adapter.Config{
		Address:                           "127.0.0.1",
		Port:                              strconv.Itoa(ports.Free(tb, "127.0.0.1")),
		ServiceDiscoveryControllerAddress: "127.0.0.1",
		ServiceDiscoveryControllerPort:    sdcPort,
		ClientCert:                        files.ClientCert,
		ClientKey:                         files.ClientKey,
		CACert:                            files.CAFile,
		MetronPort:                        3457,
		MetricsEmitSeconds:                1,
		LogLevelAddress:                   "127.0.0.1",
		LogLevelPort:                      ports.Free(tb, "127.0.0.1"),
		InternalRouteVIPRange:             "127.128.0.0/9",
	}
}

// Adapter is a bosh-dns-adapter running in-process.
type Adapter struct {
	Config adapter.Config
	Logs   *Logs

	http   *http.Client
	cancel context.CancelFunc
	done   chan error
	stop   sync.Once
	err    error
}

// StartAdapter runs an adapter with cfg until the test ends (or Stop) and
// returns once it answers /health.
func StartAdapter(tb testing.TB, cfg adapter.Config) *Adapter {
	tb.Helper()
	logs := newLogs(tb)
	logger, sink := discovery.NewLogger(adapter.Origin, logs)
	ctx, cancel := context.WithCancel(context.Background())
	a := &Adapter{
		Config: cfg, Logs: logs, cancel: cancel, done: make(chan error, 1),
		http: &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}},
	}
	go func() { a.done <- adapter.Run(ctx, logger, sink, cfg) }()
	tb.Cleanup(func() { _ = a.Stop() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-a.done:
			tb.Fatalf("adapter did not start: %v", err)
		default:
		}
		resp, err := a.http.Get(a.URL() + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("adapter not healthy within 20s: %v", err)
		}
	}
}

// Stop stops the adapter and returns Run's result.
func (a *Adapter) Stop() error {
	a.stop.Do(func() {
		a.cancel()
		a.err = <-a.done
		a.http.CloseIdleConnections()
	})
	return a.err
}

// URL is the adapter's http://127.0.0.1:<port>.
func (a *Adapter) URL() string { return "http://" + a.Config.Address + ":" + a.Config.Port }

// LogLevelURL is the adapter's log-level server base URL.
func (a *Adapter) LogLevelURL() string {
	return fmt.Sprintf("http://%s:%d", a.Config.LogLevelAddress, a.Config.LogLevelPort)
}

// Query asks the adapter as bosh-dns does. It returns the HTTP status and
// the raw body.
func (a *Adapter) Query(name, qtype string) (int, []byte, error) {
	q := url.Values{}
	if name != "" {
		q.Set("name", name)
	}
	if qtype != "" {
		q.Set("type", qtype)
	}
	resp, err := a.http.Get(a.URL() + "/?" + q.Encode())
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

// IPs asks the adapter for name's A records and returns their data; it
// fails unless the adapter answers 200 with valid JSON.
func (a *Adapter) IPs(name string) ([]string, error) {
	status, body, err := a.Query(name, "1")
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, fmt.Errorf("adapter answered %d: %s", status, body)
	}
	var r adapter.Response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("adapter answer %q: %w", body, err)
	}
	ips := make([]string, len(r.Answer))
	for i, ans := range r.Answer {
		ips[i] = ans.Data
	}
	return ips, nil
}

// NATSServerTLS is a TLS config for a NATS server with the mtlstest server
// certificate that requires mtlstest client certificates, with upstream's
// "internal service defaults".
func NATSServerTLS(tb testing.TB, files *mtlstest.Files) *tls.Config {
	return files.ServerConfig(tb, mtls.InternalServiceDefaults())
}
