package iptableslogger

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func write(t *testing.T, o *Output, s string) {
	t.Helper()
	if _, err := o.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func TestOutputFollowsRotation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "iptables.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := OpenOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	write(t, o, "a\n")
	if got := readFile(t, path); got != "old\na\n" {
		t.Fatalf("appends without truncating: %q", got)
	}
	if err := o.Check(ctx); err != nil {
		t.Fatal(err)
	}

	// logrotate: rename, then create.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := o.Check(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, o, "b\n")
	if got := readFile(t, path); got != "b\n" {
		t.Errorf("after rotation: %q", got)
	}

	// Removed: recreated.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := o.Check(ctx); err != nil {
		t.Fatal(err)
	}
	write(t, o, "c\n")
	if got := readFile(t, path); got != "c\n" {
		t.Errorf("after removal: %q", got)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644&^umask() {
		t.Errorf("mode = %v, %v", st.Mode(), err)
	}
	if got := readFile(t, path+".1"); got != "old\na\n" {
		t.Errorf("rotated file = %q", got)
	}

	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := o.Write([]byte("x")); err == nil {
		t.Error("write after close succeeded")
	}
}

func TestOutputErrors(t *testing.T) {
	if _, err := OpenOutput(filepath.Join(t.TempDir(), "missing-dir", "iptables.log")); err == nil {
		t.Fatal("no error for a missing directory")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "iptables.log")
	o, err := OpenOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil { // a directory where the file was
		t.Fatal(err)
	}
	if err := o.Check(context.Background()); err == nil {
		t.Error("reopening onto a directory: no error")
	}
}
