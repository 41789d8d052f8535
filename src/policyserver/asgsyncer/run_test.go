package asgsyncer_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/netman-release/netman/src/locket"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

func runConfig(e *ccEnv, db sqldb.Config) asgsyncer.Config {
	return asgsyncer.Config{
		ASGPollIntervalSeconds: 1, RetryDeadlineSeconds: 300, UUID: "syncer-0", Database: db,
		ClientConfig:  auth.ClientConfig{UAAClient: clientID, UAAClientSecret: clientSecret, CCURL: e.public, CCCA: e.files.CAFile, UAACA: e.files.CAFile, RequestTimeout: 5},
		CCInternalURL: e.intern,
		CCInternalCA:  e.files.CAFile, CCInternalClientCert: e.files.ClientCert, CCInternalClientKey: e.files.ClientKey,
		LogPrefix: "cfnetworking", MetronAddress: "127.0.0.1:3457",
	}
}

// TestRun runs the daemon as main does, on SQLite with the database lock
// and then with locket: it syncs at once, follows a change, and stops
// cleanly.
func TestRun(t *testing.T) {
	for _, withLocket := range []bool{false, true} {
		name := "database lock"
		if withLocket {
			name = "locket"
		}
		t.Run(name, func(t *testing.T) {
			e := startCC(t)
			e.cc.Put(publicNetworks())
			dbc := sqliteConfig(t)
			_, db := newStore(t, dbc)
			cfg := runConfig(e, dbc)
			cfg.UAAURL, cfg.UAAPort = splitURL(t, e.public)
			var srv *locket.Server
			if withLocket {
				srv = locket.NewServer()
				if err := srv.Start("127.0.0.1:0", e.files.ServerConfig(t)); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(srv.Stop)
				cfg.LocketAddress = srv.Addr()
				cfg.LocketCACertFile, cfg.LocketClientCertFile, cfg.LocketClientKeyFile = e.files.CAFile, e.files.ClientCert, e.files.ClientKey
			}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			log, capture := logtest.NewCapture(t, "cfnetworking.policy-server-asg-syncer")
			go func() { done <- asgsyncer.Run(ctx, log, cfg) }()
			waitUntil(t, "the first sync", func() bool { return len(table(t, db)) == 1 })
			if withLocket {
				// Upstream's lock: key, the config's uuid as owner, type
				// lock, and locket's default 15 s TTL.
				r, ttl, ok := srv.Held(asgsyncer.LockKey)
				want := locket.Resource{Key: "policy-server-asg-syncer", Owner: "syncer-0", Type: "lock", TypeCode: locket.Lock}
				if !ok || r != want || ttl != 15 {
					t.Errorf("locket holds %+v for %d s (held %v), want %+v for 15 s", r, ttl, ok, want)
				}
			}
			e.cc.Put(cc.SecurityGroup{GUID: "asg-new", Name: "new"})
			waitUntil(t, "the change", func() bool { return len(table(t, db)) == 2 })
			stop()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run: %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not stop")
			}
			if withLocket && srv.Holder(asgsyncer.LockKey) != "" {
				t.Errorf("lock not released on stop: held by %q", srv.Holder(asgsyncer.LockKey))
			}
			session := "sql-lock" // netman's lock in the database
			if withLocket {
				session = "locket-lock" // upstream's lock runner
			}
			for _, m := range []string{"started", "acquired-lock", "released-lock", "completed"} {
				if len(capture.Find("cfnetworking.policy-server-asg-syncer."+session+"."+m)) != 1 {
					t.Errorf("no %s.%s line: %q", session, m, capture.Messages())
				}
			}
		})
	}
}

// splitURL is uaa_url and uaa_port for a base URL, as the template splits
// them.
func splitURL(t *testing.T, base string) (string, int) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return u.Scheme + "://" + u.Hostname(), port
}
