// Package controllertest runs a real silk-controller in-process for tests
// of its clients (silk-daemon, silk-teardown) and of itself.
package controllertest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// Options shape the controller; zero values take the defaults.
type Options struct {
	Host               string        // API listen address; default 127.0.0.1
	Network            string        // default 10.255.0.0/16
	SubnetPrefixLength int           // default 24
	Database           *sqldb.Config // default a fresh sqlite database
}

// Controller is a running silk-controller.
type Controller struct {
	Config controller.Config
	Files  *mtlstest.Files
	URL    string // https://host:port of the lease API
	stop   func()
}

// Start runs a controller until the test ends (or Stop).
func Start(tb testing.TB, opts Options) *Controller {
	tb.Helper()
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Network == "" {
		opts.Network = "10.255.0.0/16"
	}
	if opts.SubnetPrefixLength == 0 {
		opts.SubnetPrefixLength = 24
	}
	db := dbtest.NewConfig(tb, sqldb.TypeSQLite)
	if opts.Database != nil {
		db = *opts.Database
	}
	files := mtlstest.NewTestFiles(tb)
	certFile, keyFile := files.ServerCert, files.ServerKey
	if opts.Host != "127.0.0.1" {
		cert, key, err := mtlstest.CA(tb).Issue(mtls.SilkControllerHost, []string{opts.Host, mtls.SilkControllerHost}, mtls.Server)
		if err != nil {
			tb.Fatal(err)
		}
		if certFile, keyFile, err = mtls.WriteKeyPair(files.Dir, "controller-"+opts.Host, cert, key); err != nil {
			tb.Fatal(err)
		}
	}
	cfg := controller.Config{
		DebugServerPort: ports.Free(tb, "127.0.0.1"), ListenHost: opts.Host, ListenPort: ports.Free(tb, opts.Host),
		CACertFile: files.CAFile, ServerCertFile: certFile, ServerKeyFile: keyFile,
		Network: opts.Network, SubnetPrefixLength: opts.SubnetPrefixLength, Database: db,
		LeaseExpirationSeconds: 3600, MetronPort: 3457, HealthCheckPort: ports.Free(tb, "127.0.0.1"),
		MetricsEmitSeconds: 1, StalenessThresholdSeconds: 3600, LogPrefix: "cfnetworking",
		Pool: sqldb.Pool{MaxOpenConnections: 20, MaxIdleConnections: 10, ConnectionsMaxLifetimeSeconds: 3600},
	}
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		sink := lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO)
		done <- controller.Run(ctx, logtest.New(tb), sink, cfg)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					tb.Errorf("controller exited with %v", err)
				}
			case <-time.After(15 * time.Second):
				tb.Error("controller did not stop within 15s")
			}
		})
	}
	tb.Cleanup(stop)
	c := &Controller{Config: cfg, Files: files, URL: fmt.Sprintf("https://%s:%d", opts.Host, cfg.ListenPort), stop: stop}
	c.waitHealthy(tb, done)
	return c
}

// Stop ends the controller (a partition, from its clients' view).
func (c *Controller) Stop() { c.stop() }

// HTTPClient is an mTLS client with the test client certificate.
func (c *Controller) HTTPClient(tb testing.TB) *http.Client {
	// At most 32 connections: a burst of 255 concurrent acquires still
	// keeps 32 in flight at the server, but no longer needs 255 TLS
	// handshakes at once, which under the race detector on a loaded 2-core
	// machine outlast the server's 10 s handshake deadline (EOF).
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig:     c.Files.ClientConfig(tb, mtls.WithServerName(mtls.SilkControllerHost)),
		MaxConnsPerHost:     32,
		MaxIdleConnsPerHost: 32,
	}}
}

// Client is a lease-API client with the test client certificate.
func (c *Controller) Client(tb testing.TB) *controller.Client {
	return controller.NewClient(c.HTTPClient(tb), c.URL)
}

func (c *Controller) waitHealthy(tb testing.TB, exited <-chan error) {
	tb.Helper()
	urls := []string{
		fmt.Sprintf("http://127.0.0.1:%d/health", c.Config.HealthCheckPort),
		fmt.Sprintf("http://127.0.0.1:%d/log-level", c.Config.DebugServerPort),
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, url := range urls {
		for {
			select {
			case err := <-exited:
				tb.Fatalf("controller exited during start-up: %v", err)
			default:
			}
			if resp, err := http.Get(url); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%s never answered 200", url)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}
