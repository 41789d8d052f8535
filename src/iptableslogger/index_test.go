package iptableslogger

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/metadata"
)

func newStore(t *testing.T) *metadata.Store {
	t.Helper()
	return metadata.New(filepath.Join(t.TempDir(), "container-metadata", "store.json"))
}

func addContainer(t *testing.T, s *metadata.Store, handle, ip string, md map[string]any) {
	t.Helper()
	if err := s.Add(context.Background(), handle, ip, md); err != nil {
		t.Fatal(err)
	}
}

func TestContainersLookup(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	c := NewContainers(s, "10.0.16.5", "cell-guid")

	// No store file yet: nothing found, host fields still set.
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	host := Container{HostIP: "10.0.16.5", HostGUID: "cell-guid"}
	if diff := cmp.Diff(host, c.Lookup("10.255.0.1")); diff != "" {
		t.Errorf("empty store (-want +got):\n%s", diff)
	}

	addContainer(t, s, "handle-1", "10.255.0.1", map[string]any{"app_id": "app-1", "space_id": "space-1", "org_id": "org-1", "policy_group_id": "pg"})
	addContainer(t, s, "handle-2", "10.255.0.2", map[string]any{"app_id": 7, "space_id": nil})
	addContainer(t, s, "handle-3", "10.255.0.3", nil)
	// A stale entry sharing an IP resolves to the smaller handle.
	addContainer(t, s, "handle-0-stale", "10.255.0.1", map[string]any{"app_id": "stale"})
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]Container{
		"10.255.0.1": {ContainerID: "handle-0-stale", AppGUID: "stale", HostIP: "10.0.16.5", HostGUID: "cell-guid"},
		"10.255.0.2": {ContainerID: "handle-2", HostIP: "10.0.16.5", HostGUID: "cell-guid"},
		"10.255.0.3": {ContainerID: "handle-3", HostIP: "10.0.16.5", HostGUID: "cell-guid"},
		"10.255.0.9": host,
	} {
		if diff := cmp.Diff(want, c.Lookup(ip)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", ip, diff)
		}
	}

	if _, err := s.Delete(ctx, "handle-0-stale"); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	want := Container{ContainerID: "handle-1", AppGUID: "app-1", SpaceGUID: "space-1", OrganizationGUID: "org-1", HostIP: "10.0.16.5", HostGUID: "cell-guid"}
	if diff := cmp.Diff(want, c.Lookup("10.255.0.1")); diff != "" {
		t.Errorf("after delete (-want +got):\n%s", diff)
	}
}

func TestContainersKeepLastIndexOnError(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	addContainer(t, s, "handle-1", "10.255.0.1", map[string]any{"app_id": "app-1"})
	c := NewContainers(s, "h", "g")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.VersionPath(), []byte("99"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("corrupt store: no error")
	}
	if got := c.Lookup("10.255.0.1").AppGUID; got != "app-1" {
		t.Errorf("after a failed refresh AppGUID = %q, want the last good index", got)
	}
	if err := os.WriteFile(s.VersionPath(), []byte("not a number"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err == nil {
		t.Fatal("bad version file: no error")
	}
}
