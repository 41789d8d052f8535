package cni

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silk", "store.json")
	s := Store{Path: path}

	all, err := s.ReadAll()
	if err != nil || len(all) != 0 {
		t.Fatalf("empty store: %v %v", all, err)
	}
	if err := s.Add("netns-a", net.ParseIP("10.255.17.2")); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	if got, want := string(data), `{"netns-a":{"handle":"netns-a","ip":"10.255.17.2","metadata":null}}`+"\n"; got != want {
		t.Errorf("file = %q, want %q", got, want)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode())
	}
	di, _ := os.Stat(filepath.Dir(path))
	if di.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", di.Mode())
	}

	// Entries written by others (newer upstream: ipv6, metadata) survive.
	foreign := `{"netns-a":{"handle":"netns-a","ip":"10.255.17.2","metadata":null},"x":{"handle":"x","ip":"10.255.17.9","ipv6":"fd00::9","metadata":{"k":"v"}}}`
	if err := os.WriteFile(path, []byte(foreign), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("netns-b", net.ParseIP("10.255.17.3")); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), `"x":{"handle":"x","ip":"10.255.17.9","ipv6":"fd00::9","metadata":{"k":"v"}}`) {
		t.Errorf("foreign entry changed: %s", data)
	}
	if err := s.Delete("netns-a"); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete("netns-a"); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	removed, err := s.DeleteIf(func(c Container) bool { return c.IP == "10.255.17.9" })
	if err != nil || len(removed) != 1 || removed[0].Handle != "x" {
		t.Fatalf("DeleteIf = %v, %v", removed, err)
	}
	all, _ = s.ReadAll()
	if len(all) != 1 || all["netns-b"].IP != "10.255.17.3" {
		t.Errorf("left %v", all)
	}

	if err := s.Add("", net.ParseIP("10.0.0.1")); err == nil {
		t.Error("empty handle accepted")
	}
	if err := (Store{}).Add("h", net.ParseIP("10.0.0.1")); err == nil {
		t.Error("empty path accepted")
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Add("h", net.ParseIP("10.0.0.1")); err == nil || !strings.Contains(err.Error(), "decoding file") {
		t.Errorf("corrupt file: %v", err)
	}
}

// TestStoreConcurrent: the flock serialises writers, so no update is lost.
func TestStoreConcurrent(t *testing.T) {
	s := Store{Path: filepath.Join(t.TempDir(), "store.json")}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			if err := s.Add(fmt.Sprintf("h%d", i), net.IPv4(10, 255, 0, byte(i+2))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	all, err := s.ReadAll()
	if err != nil || len(all) != 50 {
		t.Fatalf("%d entries, %v", len(all), err)
	}
}
