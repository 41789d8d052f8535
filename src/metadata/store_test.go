package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

func newStore(t *testing.T, opts ...Option) *Store {
	t.Helper()
	return New(filepath.Join(t.TempDir(), "container-metadata", "store.json"), opts...)
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestExactOnDiskFormat(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	if err := s.Add(ctx, "handle-b", "10.255.0.3", map[string]any{"policy_group_id": "app-guid", "space_id": "s<1>", "ports": "8080, 9090"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, "handle-a", "10.255.0.2", nil); err != nil {
		t.Fatal(err)
	}
	want := `{"handle-a":{"handle":"handle-a","ip":"10.255.0.2","metadata":null},"handle-b":{"handle":"handle-b","ip":"10.255.0.3","metadata":{"policy_group_id":"app-guid","ports":"8080, 9090","space_id":"s\u003c1\u003e"}}}` + "\n"
	if diff := cmp.Diff(want, readFile(t, s.Path())); diff != "" {
		t.Errorf("store.json (-want +got):\n%s", diff)
	}
	if got := readFile(t, s.VersionPath()); got != "3" {
		t.Errorf("version %q, want 3 (missing counts as 1, +1 per write)", got)
	}
	for _, p := range []string{s.Path(), s.VersionPath(), s.LockPath()} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v", p, fi.Mode(), err)
		}
	}
	fi, _ := os.Stat(filepath.Dir(s.Path()))
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", fi.Mode())
	}
	if entries, _ := os.ReadDir(filepath.Dir(s.Path())); len(entries) != 3 {
		t.Errorf("stray files: %v", entries)
	}
}

func TestReadsUpstreamWrittenFiles(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	if err := os.MkdirAll(filepath.Dir(s.Path()), 0o700); err != nil {
		t.Fatal(err)
	}
	// As upstream leaves them: an ipv6 key from newer releases, an empty
	// version file.
	upstream := `{"h1":{"handle":"h1","ip":"10.255.9.9","ipv6":"","metadata":{"app_id":"a1"}}}` + "\n"
	if err := os.WriteFile(s.Path(), []byte(upstream), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.VersionPath(), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := s.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Container{"h1": {Handle: "h1", IP: "10.255.9.9", Metadata: map[string]any{"app_id": "a1"}}}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if v, _ := s.Version(); v != 1 {
		t.Errorf("empty version file reads as %d, want 1", v)
	}
	if _, err := s.Delete(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, s.Path()); got != "{}\n" {
		t.Errorf("after delete %q", got)
	}
	if got := readFile(t, s.VersionPath()); got != "2" {
		t.Errorf("version %q", got)
	}
}

func TestAddUpdateDeleteSemantics(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	if err := s.Add(ctx, "", "10.0.0.1", nil); err == nil || err.Error() != "invalid handle" {
		t.Errorf("empty handle: %v", err)
	}
	if err := s.Add(ctx, "h", "10.0.0.300", nil); err == nil || err.Error() != "invalid ip: 10.0.0.300" {
		t.Errorf("bad ip: %v", err)
	}
	if err := s.Update(ctx, "h", "10.0.0.1", nil); !errors.Is(err, ErrEntryNotExist) || err.Error() != "entry does not exist" {
		t.Errorf("update missing: %v", err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Error("failed writes created the data file")
	}
	if err := s.Add(ctx, "h", "10.0.0.1", map[string]any{"a": "1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(ctx, "h", "10.0.0.2", map[string]any{"a": "2"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Delete(ctx, "h")
	if err != nil || got.IP != "10.0.0.2" || got.Metadata["a"] != "2" {
		t.Errorf("delete returned %+v %v", got, err)
	}
	got, err = s.Delete(ctx, "unknown")
	if err != nil || !cmp.Equal(got, Container{}) {
		t.Errorf("delete unknown: %+v %v", got, err)
	}
	if v, _ := s.Version(); v != 5 {
		t.Errorf("version %d, want 5", v)
	}
	if _, err := s.Delete(ctx, ""); err == nil {
		t.Error("empty handle deleted")
	}
}

func TestReadAllCachesByVersion(t *testing.T) {
	ctx := t.Context()
	writer, reader := newStore(t), (*Store)(nil)
	reader = New(writer.Path())
	if err := writer.Add(ctx, "h1", "10.0.0.1", nil); err != nil {
		t.Fatal(err)
	}
	first, err := reader.ReadAll(ctx)
	if err != nil || len(first) != 1 {
		t.Fatalf("%v %v", first, err)
	}
	// Change the data behind the store's back without a version bump: the
	// cached pool is served.
	if err := os.WriteFile(writer.Path(), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	again, _ := reader.ReadAll(ctx)
	if len(again) != 1 {
		t.Error("re-read without a version change")
	}
	if err := writer.Add(ctx, "h2", "10.0.0.2", nil); err != nil {
		t.Fatal(err)
	}
	fresh, _ := reader.ReadAll(ctx)
	if len(fresh) != 1 || fresh["h2"].IP != "10.0.0.2" {
		t.Errorf("after version bump: %v", fresh)
	}
}

func TestConcurrentWritersInProcess(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "store.json")
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := New(path) // separate Stores share the lock file
			for i := 0; i < each; i++ {
				h := fmt.Sprintf("w%d-%d", w, i)
				if err := s.Add(ctx, h, fmt.Sprintf("10.%d.0.%d", w, i+1), nil); err != nil {
					t.Error(err)
					return
				}
				if i%5 == 4 {
					if _, err := s.Delete(ctx, h); err != nil {
						t.Error(err)
					}
				}
				if _, err := s.ReadAll(ctx); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	s := New(path)
	all, err := s.ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != writers*each*4/5 {
		t.Errorf("%d entries, want %d (lost updates)", len(all), writers*each*4/5)
	}
	if v, _ := s.Version(); v != 1+writers*each+writers*each/5 {
		t.Errorf("version %d, want %d", v, 1+writers*each+writers*each/5)
	}
}

// TestConcurrentWriterProcesses runs writers as separate processes (this
// test binary re-executed), so only the flock keeps them apart.
func TestConcurrentWriterProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "store.json")
	const procs, each = 4, 20
	var wg sync.WaitGroup
	for p := 0; p < procs; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "METADATA_WRITER="+strconv.Itoa(p), "METADATA_PATH="+path, "METADATA_EACH="+strconv.Itoa(each))
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("writer %d: %v\n%s", p, err, out)
			}
		}()
	}
	wg.Wait()
	var all map[string]Container
	if err := json.Unmarshal([]byte(readFile(t, path)), &all); err != nil {
		t.Fatal(err)
	}
	if len(all) != procs*each {
		t.Errorf("%d entries, want %d", len(all), procs*each)
	}
	if got := readFile(t, path+"_version"); got != strconv.Itoa(1+procs*each) {
		t.Errorf("version %s, want %d", got, 1+procs*each)
	}
}

// TestMain runs this test binary as one of TestConcurrentWriterProcesses'
// writers when METADATA_WRITER is set (no test runs then), and as the test
// binary otherwise.
func TestMain(m *testing.M) {
	if id := os.Getenv("METADATA_WRITER"); id != "" {
		if err := writerProcess(id); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func writerProcess(id string) error {
	each, err := strconv.Atoi(os.Getenv("METADATA_EACH"))
	if err != nil {
		return fmt.Errorf("METADATA_EACH: %w", err)
	}
	s := New(os.Getenv("METADATA_PATH"))
	for i := 0; i < each; i++ {
		if err := s.Add(context.Background(), fmt.Sprintf("p%s-%d", id, i), "10.0.0."+strconv.Itoa(i+1), map[string]any{"p": id}); err != nil {
			return err
		}
	}
	return nil
}

func TestOwnership(t *testing.T) {
	if os.Geteuid() != 0 {
		testtier.Unavailable(t, "chown needs root (scripts/test runs as root)", netnstest.EnvRequireRoot)
		return
	}
	s := newStore(t, WithOwner("nobody", "nogroup"))
	uid, gid, err := LookupOwner("nobody", "nogroup")
	if err != nil {
		t.Fatalf("Debian's nobody:nogroup is missing: %v", err)
	}
	if err := s.Add(t.Context(), "h", "10.0.0.1", nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{s.Path(), s.VersionPath(), s.LockPath()} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := statOwner(fi); st != [2]int{uid, gid} {
			t.Errorf("%s owned by %v, want %d:%d", p, st, uid, gid)
		}
	}
	bad := newStore(t, WithOwner("no-such-user-netman", "nogroup"))
	if err := bad.Add(t.Context(), "h", "10.0.0.1", nil); err == nil {
		t.Error("unknown owner accepted")
	}
}

func TestModifyWritesOnceOrNotAtAll(t *testing.T) {
	ctx := t.Context()
	s := newStore(t)
	for _, h := range []string{"a", "b"} {
		if err := s.Add(ctx, h, "10.0.0.1", map[string]any{"k": "old"}); err != nil {
			t.Fatal(err)
		}
	}
	v0, _ := s.Version()

	if err := s.Modify(ctx, func(map[string]Container) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Version(); v != v0 {
		t.Errorf("an unchanged Modify bumped the version %d -> %d", v0, v)
	}

	if err := s.Modify(ctx, func(pool map[string]Container) bool {
		for h, c := range pool {
			c.Metadata = map[string]any{"k": "new"}
			pool[h] = c
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if v, _ := s.Version(); v != v0+1 {
		t.Errorf("version %d after changing two entries in one Modify, want %d", v, v0+1)
	}
	got, err := New(s.Path()).ReadAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Container{
		"a": {Handle: "a", IP: "10.0.0.1", Metadata: map[string]any{"k": "new"}},
		"b": {Handle: "b", IP: "10.0.0.1", Metadata: map[string]any{"k": "new"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
}
