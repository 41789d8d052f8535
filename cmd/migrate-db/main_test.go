package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"

	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "migrate-db", main)) }

func run(t *testing.T, cfg string) (stdout, stderr string, code int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy-server.json")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	cmd := maintest.Command("-config-file", path)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

func TestMigratesAndPopulates(t *testing.T) {
	dbtest.ForEachDialect(t, func(t *testing.T, c sqldb.Config) {
		// Other policy-server keys are present and ignored.
		cfg := fmt.Sprintf(`{"listen_host": "0.0.0.0", "uaa_client": "network-policy", "tag_length": 2,
			"database_migration_timeout": 60, "max_open_connections": 4, "database": {"type": %q, "user": %q, "password": %q,
			"host": %q, "port": %d, "timeout": 5, "database_name": %q}}`, c.Type, c.User, c.Password, c.Host, c.Port, c.DatabaseName)
		stdout, stderr, code := run(t, cfg)
		if code != 0 {
			t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
		}
		for _, msg := range []string{"getting migration db connection", "migration db connection retrieved", "running migrations",
			`finished running migrations","data":{"num-migrations-completed":90}`, "populating groups table", "finished populating groups table"} {
			if !strings.Contains(stdout, `"message":"cfnetworking.policy-server-migrate-db.`+msg) {
				t.Errorf("no %q log line in:\n%s", msg, stdout)
			}
		}
		db, err := sqldb.Open(context.Background(), logtest.New(t), c, sqldb.Pool{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var groups int
		if err := db.GetContext(context.Background(), &groups, `SELECT COUNT(*) FROM "groups"`); err != nil || groups != 65535 {
			t.Errorf("groups = %d, %v; want 65535", groups, err)
		}
		// A second run is a no-op.
		if stdout, _, code := run(t, cfg); code != 0 || !strings.Contains(stdout, `"num-migrations-completed":0`) {
			t.Errorf("second run: exit %d\n%s", code, stdout)
		}
	})
}

func TestGivesUpAfterTheMigrationTimeout(t *testing.T) {
	// Nothing listens on port 1: every attempt fails fast.
	stdout, _, code := run(t, `{"tag_length": 2, "database_migration_timeout": 2,
		"database": {"type": "postgres", "user": "u", "host": "127.0.0.1", "port": 1, "timeout": 1, "database_name": "x"}}`)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if !strings.Contains(stdout, "failed migrating and populating tags, retrying") ||
		!strings.HasSuffix(stdout, "fatal error occured, migrations and groups table population timed out after 2 seconds") {
		t.Errorf("stdout:\n%s", stdout)
	}
}

func TestBadConfig(t *testing.T) {
	_, stderr, code := run(t, `{"database": {"type": "oracle"}}`)
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	for _, want := range []string{"cfnetworking.policy-server-migrate-db: could not read config file", "database_migration_timeout", "tag_length", "database.type"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}
