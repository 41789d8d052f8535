package main

import (
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/gardenclient/gardentest"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "silk-datastore-syncer", main)) }

func TestSyncsUntilSignalled(t *testing.T) {
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	g, err := user.LookupGroupId(u.Gid)
	if err != nil {
		t.Fatal(err)
	}
	garden := gardentest.New(t)
	lc := `{"guid":"app1","index":0,"source_name":"CELL","tags":{"app_name":"renamed"}}`
	garden.Create("c1", map[string]string{"log_config": lc})
	store := metadata.New(filepath.Join(t.TempDir(), "store.json"))
	if err := store.Add(t.Context(), "c1", "10.255.1.2", map[string]any{"log_config": `{"guid":"app1"}`}); err != nil {
		t.Fatal(err)
	}

	proc := maintest.Start(t, maintest.Command("-n", "1", "-gardenNetwork", "unix", "-gardenAddr", garden.Socket,
		"-silkFile", store.Path(), "-silkFileOwner", u.Username, "-silkFileGroup", g.Name, "-logLevel", "debug"))
	proc.Until(t, "synced into the store", 10*time.Second, func() bool {
		all, err := metadata.New(store.Path()).ReadAll(t.Context())
		return err == nil && all["c1"].Metadata["log_config"] == lc
	})
	proc.Terminate(t, 10*time.Second)
	out := proc.Out
	for _, want := range []string{`"message":"cfnetworking.silk-datastore-syncer.properties"`, `"message":"cfnetworking.silk-datastore-syncer.Datastore container reconciling with Garden container"`} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %s:\n%s", want, out.String())
		}
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"-n", "0", "-gardenNetwork", "unix", "-gardenAddr", "/g.sock", "-silkFile", "/s.json"}, "-n must be at least 1 (got 0)"},
		{[]string{"-gardenNetwork", "udp", "-gardenAddr", "/g.sock", "-silkFile", "/s.json"}, `-gardenNetwork must be unix or tcp (got "udp")`},
		{[]string{"-gardenNetwork", "unix"}, "-gardenAddr is required\n-silkFile is required"},
		{[]string{"-gardenNetwork", "unix", "-gardenAddr", "/g.sock", "-silkFile", "/s.json", "-logLevel", "loud"}, "loud"},
	}
	for _, tc := range tests {
		stderr := maintest.Fails(t, maintest.Command(tc.args...), 1)
		if !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: stderr %q lacks %q", tc.args, stderr, tc.want)
		}
	}
}

func TestUnrecoverableGarden(t *testing.T) {
	garden := gardentest.New(t)
	garden.Fail("UnrecoverableError")
	stderr := maintest.Fails(t, maintest.Command("-gardenNetwork", "unix", "-gardenAddr", garden.Socket,
		"-silkFile", filepath.Join(t.TempDir(), "store.json")), 1)
	if !strings.Contains(stderr, "Garden: unrecoverable: garden is down") {
		t.Errorf("stderr: %s", stderr)
	}
}
