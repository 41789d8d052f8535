package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "policy-server-asg-syncer", main)) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	configtest.WriteFile(t, path, map[string]any{"log_prefix": "cf", "asg_poll_interval_seconds": 0, "database": map[string]any{"type": "sqlite"}})
	stderr := maintest.Fails(t, maintest.Command("-config-file", path), 1)
	for _, want := range []string{
		// Upstream's prefix, not the invalid config's log_prefix.
		"cfnetworking.policy-server-asg-syncer: could not read config file: invalid config:",
		"asg_poll_interval_seconds: must be at least 1", "uuid: missing required value",
		"database.database_name: missing required value", "cc_internal_url: missing required value",
		"metron_address: missing required value",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	stderr = maintest.Fails(t, maintest.Command("-config-file", filepath.Join(t.TempDir(), "missing.json")), 1)
	if !strings.HasPrefix(stderr, "cfnetworking.policy-server-asg-syncer: could not read config file: reading config: ") {
		t.Errorf("missing file: stderr %q", stderr)
	}
}

// TestSyncsAndStopsOnSIGTERM runs the binary against the fake Cloud
// Controller with the SQLite database lock.
func TestSyncsAndStopsOnSIGTERM(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	srv := cc.New("network-policy", "secret")
	t.Cleanup(func() { _ = srv.Close() })
	public, err := srv.Start("127.0.0.1:0", files.ServerConfig(t, mtls.WithoutClientAuth()))
	if err != nil {
		t.Fatal(err)
	}
	internal, err := srv.Start("127.0.0.1:0", files.ServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	srv.Put(cc.SecurityGroup{GUID: "asg-1", Name: "dns", RunningDefault: true, Rules: []cc.Rule{{Protocol: "udp", Destination: "0.0.0.0/0", Ports: "53"}}})

	dir := t.TempDir()
	dbc := sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(dir, "policy.db"), Timeout: 5}
	db, err := sqldb.Open(context.Background(), logtest.New(t), dbc, sqldb.Pool{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := store.Migrate(context.Background(), db); err != nil {
		t.Fatal(err)
	}

	u, _ := url.Parse("https://" + public)
	port, _ := strconv.Atoi(u.Port())
	path := filepath.Join(dir, "c.json")
	configtest.WriteFile(t, path, map[string]any{
		"uuid": "syncer-0", "asg_poll_interval_seconds": 1, "database": dbc,
		"uaa_client": "network-policy", "uaa_client_secret": "secret", "uaa_url": "https://127.0.0.1", "uaa_port": port,
		"uaa_ca": files.CAFile, "cc_url": "https://" + public, "cc_ca_cert": files.CAFile,
		"cc_internal_url": "https://" + internal, "cc_internal_ca_cert": files.CAFile,
		"cc_internal_client_cert": files.ClientCert, "cc_internal_client_key": files.ClientKey,
		"log_prefix": "cfnetworking", "log_level": "debug", "metron_address": "127.0.0.1:3457",
	})
	proc := maintest.Start(t, maintest.Command("-config-file", path))
	synced := func() bool {
		var n int
		return db.GetContext(context.Background(), &n, `SELECT COUNT(*) FROM security_groups`) == nil && n == 1
	}
	proc.Until(t, "synced", 30*time.Second, synced)
	proc.Terminate(t, 20*time.Second)
	stdout := proc.Out
	out := stdout.String()
	for _, want := range []string{
		`"source":"cfnetworking.policy-server-asg-syncer"`,
		`"message":"cfnetworking.policy-server-asg-syncer.starting asg syncer"`,
		`"message":"cfnetworking.policy-server-asg-syncer.sql-lock.acquired-lock"`,
		`"message":"cfnetworking.policy-server-asg-syncer.successfully-fetched-security-groups"`,
		`"message":"cfnetworking.policy-server-asg-syncer.sql-lock.released-lock"`,
		`"message":"cfnetworking.policy-server-asg-syncer.exited"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("logs lack %s:\n%s", want, out)
		}
	}
}
