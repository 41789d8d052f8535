package cni

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

func TestRemoveLegacyIFBs(t *testing.T) {
	netnstest.RequireRoot(t)
	cell := netnstest.New(t, "t")
	cell.Run(t, "ip", "link", "add", "i-010255017002", "type", "ifb")
	cell.Run(t, "ip", "link", "add", "bwp0123456789ab", "type", "ifb") // the bandwidth plugin's
	cell.Run(t, "ip", "link", "add", "if-veth", "type", "veth", "peer", "name", "other")
	if err := cell.Do(func() error { RemoveLegacyIFBs(logtest.New(t)); return nil }); err != nil {
		t.Fatal(err)
	}
	if got := sorted(links(t, cell)); !slices.Equal(got, []string{"bwp0123456789ab", "if-veth", "other"}) {
		t.Errorf("links left %v", got)
	}
}

func TestTeardownConfigAndPaths(t *testing.T) {
	dir := t.TempDir()
	keep := filepath.Join(dir, "keep")
	gone := filepath.Join(dir, "host-local")
	for _, d := range []string{keep, filepath.Join(gone, "ipam", "silk")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfgPath := filepath.Join(dir, "teardown-config.json")
	if err := os.WriteFile(cfgPath, []byte(`{"paths_to_delete":["`+gone+`","`+filepath.Join(dir, "missing")+`"]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadTeardownConfig(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	RemovePaths(logtest.New(t), cfg.PathsToDelete)
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", gone, err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("%s removed: %v", keep, err)
	}
	if _, err := LoadTeardownConfig(filepath.Join(dir, "nope.json")); err == nil {
		t.Error("missing config accepted")
	}
	if err := os.WriteFile(cfgPath, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTeardownConfig(cfgPath); err == nil {
		t.Error("malformed config accepted")
	}
}
