package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestSQLiteRoundTrip runs the command as the bbr-cfnetworkingdb scripts do
// for netman's sqlite database.
func TestSQLiteRoundTrip(t *testing.T) {
	ctx := context.Background()
	src := storetest.Config(t, sqldb.TypeSQLite)
	s := storetest.OpenStore(t, src)
	want := []policy.Policy{policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8090)}
	if err := s.Create(ctx, want); err != nil {
		t.Fatal(err)
	}
	artifact := filepath.Join(t.TempDir(), "cfnetworking-artifact-file")
	var stderr bytes.Buffer
	if code := run(ctx, []string{"--backup", "--config", configtest.Write(t, "config.json", map[string]any{"adapter": "sqlite", "database": src.DatabaseName}), "--artifact-file", artifact}, &stderr); code != 0 {
		t.Fatalf("backup exited %d: %s", code, stderr.String())
	}
	dst := dbtest.NewConfig(t, sqldb.TypeSQLite)
	if code := run(ctx, []string{"--restore", "--config", configtest.Write(t, "config.json", map[string]any{"adapter": "sqlite", "database": dst.DatabaseName}), "--artifact-file", artifact}, &stderr); code != 0 {
		t.Fatalf("restore exited %d: %s", code, stderr.String())
	}
	got, err := storetest.OpenStore(t, dst).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(policy.WithoutTags(want), policy.WithoutTags(got)); diff != "" {
		t.Errorf("restored policies (-want +got):\n%s", diff)
	}
}

func TestUsageErrors(t *testing.T) {
	cfg := configtest.Write(t, "config.json", map[string]any{"adapter": "sqlite", "database": filepath.Join(t.TempDir(), "missing.db")})
	bad := configtest.Write(t, "config.json", map[string]any{"adapter": "oracle", "database": "d"})
	cases := []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"both actions", []string{"--backup", "--restore", "--config", cfg, "--artifact-file", "a"}, 2, "only one of --backup or --restore can be provided"},
		{"no action", []string{"--config", cfg, "--artifact-file", "a"}, 2, "missing --backup or --restore flag"},
		{"no config", []string{"--backup", "--artifact-file", "a"}, 2, "missing --config flag"},
		{"no artifact", []string{"--backup", "--config", cfg}, 2, "missing --artifact-file flag"},
		{"unknown flag", []string{"--backup", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"bad adapter", []string{"--backup", "--config", bad, "--artifact-file", "a"}, 1, `unsupported adapter "oracle"`},
		{"missing database", []string{"--backup", "--config", cfg, "--artifact-file", filepath.Join(t.TempDir(), "a")}, 1, "no such file or directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(context.Background(), c.args, &stderr)
			if code != c.wantCode || !strings.Contains(stderr.String(), c.wantErr) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr.String(), c.wantCode, c.wantErr)
			}
		})
	}
}
