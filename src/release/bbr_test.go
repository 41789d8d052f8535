package release

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
)

// TestMain removes storetest's migrated sqlite template after the tests.
func TestMain(m *testing.M) { os.Exit(storetest.Main(m)) }

// TestBBRScriptsRestoreIntoEmptyDatabase runs bbr-cfnetworkingdb's rendered
// bin/bbr/backup and bin/bbr/restore (their "run" branch, what BPM runs)
// against real databases: a populated policy database is backed up into
// BBR's artifact directory, restored into a new, empty database, and read
// back through netman's store, whose migrations find nothing to do. The
// SDK's database-backup-restorer (not in this release) is stood in for by
// wrappers with its interface around policy-server-backup-restore, which
// runs the SDK's pg_dump/pg_restore and mysqldump/mysql command lines; for
// sqlite the scripts run policy-server-backup-restore themselves.
func TestBBRScriptsRestoreIntoEmptyDatabase(t *testing.T) {
	requireRuby(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./cmd/policy-server-backup-restore")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	tool := filepath.Join(bin, "policy-server-backup-restore")

	dbtest.EachDialect(t, func(t *testing.T, dbType string) {
		ctx := context.Background()
		srcConfig := storetest.Config(t, dbType)
		src := storetest.OpenStore(t, srcConfig)
		storetest.Populate(t, src)
		want := storetest.Read(t, src)

		artifacts := t.TempDir() + "/" // BBR's directory, with its trailing slash
		runBBRScript(t, dbType, srcConfig, "backup", artifacts, tool)
		if _, err := os.Stat(filepath.Join(artifacts, "cfnetworking-artifact-file")); err != nil {
			t.Fatalf("the backup wrote no artifact: %v", err)
		}

		dstConfig := dbtest.NewConfig(t, dbType)
		runBBRScript(t, dbType, dstConfig, "restore", artifacts, tool)
		dst := storetest.OpenStore(t, dstConfig)
		if diff := gocmp.Diff(want, storetest.Read(t, dst)); diff != "" {
			t.Errorf("restored database (-backed up +restored):\n%s", diff)
		}
		if n, err := store.Migrate(ctx, dst.DB()); err != nil || n != 0 {
			t.Errorf("migrating the restored database: %d migrations applied, %v; want it up to date", n, err)
		}
	})
}

// runBBRScript renders the deployment with policy-server on the database,
// then runs the job's script for action with /var/vcap pointed at the
// rendering, the SDK's wrappers and the built tool.
func runBBRScript(t *testing.T, dbType string, db sqldb.Config, action, artifacts, tool string) {
	t.Helper()
	d := withJob(t, cfDeployment(t), "policy-server", func(j *Job) {
		if dbType == sqldb.TypeSQLite {
			j.Properties["database"] = map[string]any{"type": "sqlite", "name": db.DatabaseName}
			return
		}
		j.Properties["database"] = map[string]any{
			"type": dbType, "username": db.User, "password": db.Password, "host": db.Host,
			"port": int(db.Port), "name": db.DatabaseName,
		}
	})
	if dbType == sqldb.TypeSQLite {
		d = moveJob(t, d, "bbr-cfnetworkingdb", "api")
	}
	r := mustRender(t, d, Target{InstanceGroup: instanceGroupOf(t, d, "bbr-cfnetworkingdb"), Job: "bbr-cfnetworkingdb"})
	f := r.file(t, "bbr-cfnetworkingdb", "bin/bbr/"+action)
	jobs := filepath.Join(r.out, f.InstanceGroup)

	// The SDK's bin/backup and bin/restore run its binary with --backup or
	// --restore and the script's flags.
	sdk := filepath.Join(jobs, "database-backup-restorer", "bin")
	if err := os.MkdirAll(sdk, 0o755); err != nil {
		t.Fatal(err)
	}
	wrapper := fmt.Sprintf("#!/bin/bash\nexec %q --%s \"$@\"\n", tool, action)
	if err := os.WriteFile(filepath.Join(sdk, action), []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer(
		"/var/vcap/jobs/", jobs+"/",
		"/var/vcap/packages/policy-server/bin/policy-server-backup-restore", tool,
	).Replace(string(readFile(t, f.Path)))
	if strings.Contains(script, "/var/vcap/") {
		t.Fatalf("bin/bbr/%s uses a /var/vcap path the test does not provide:\n%s", action, script)
	}
	path := filepath.Join(t.TempDir(), action)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", path, "run")
	cmd.Env = append(os.Environ(), "BBR_ARTIFACT_DIRECTORY="+artifacts)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bin/bbr/%s run: %v\n%s\nscript:\n%s", action, err, out, script)
	}
}

func instanceGroupOf(t *testing.T, d Deployment, job string) string {
	t.Helper()
	for _, ig := range d.InstanceGroups {
		for _, j := range ig.Jobs {
			if j.Name == job {
				return ig.Name
			}
		}
	}
	t.Fatalf("no job %s", job)
	return ""
}
