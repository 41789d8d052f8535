package internalapi_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// Agents keep their long-polls parked over HTTP/2 and ask again as soon as
// one is answered, as the agent's watcher does. Stopping the server under
// them must not wait out the graceful shutdown timeout (10 s), which made
// netman-fleet's scenario 4 see 12 s from SIGTERM to healthy again.
func TestShutdownUnderHTTP2LongPollers(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	cfg := internalapi.Config{
		LogPrefix: "cfnetworking", ListenHost: "127.0.0.1", InternalListenPort: ports.Free(t, "127.0.0.1"),
		DebugServerHost: "127.0.0.1", DebugServerPort: ports.Free(t, "127.0.0.1"), HealthCheckPort: ports.Free(t, "127.0.0.1"),
		CACertFile: files.CAFile, ServerCertFile: files.ServerCert, ServerKeyFile: files.ServerKey,
		Database: migratedConfig(t, sqldb.TypeSQLite), TagLength: 2, MetronAddress: "127.0.0.1:3457",
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- internalapi.Run(ctx, logtest.New(t), lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO), cfg)
	}()
	waitFor(t, done, fmt.Sprintf("http://127.0.0.1:%d/health", cfg.HealthCheckPort))
	url := fmt.Sprintf("https://127.0.0.1:%d", cfg.InternalListenPort)
	tlsConfig := files.ClientConfig(t, mtls.WithServerName(mtls.PolicyServerHost))

	const agents = 50
	pollers, stopPollers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range agents {
		c := agent.NewClient(url, tlsConfig, 5*time.Second)
		since, _, err := c.LastUpdated(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids := []string{fmt.Sprintf("app-%d", i)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pollers.Err() == nil {
				t0 := time.Now()
				s, err := c.WaitPolicies(pollers, since, ids, 20*time.Second, 5*time.Second)
				if err == nil && s.LongPoll {
					since = s.Value
				}
				if err != nil || time.Since(t0) < 100*time.Millisecond {
					time.Sleep(100 * time.Millisecond)
				}
			}
		}()
	}
	defer func() { stopPollers(); wg.Wait() }()
	time.Sleep(500 * time.Millisecond) // every long-poll is parked

	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("did not stop")
	}
	t.Logf("stopped in %s", time.Since(stopped))
	if d := time.Since(stopped); d > 3*time.Second {
		t.Errorf("shutdown took %s with %d HTTP/2 long-pollers", d, agents)
	}
}
