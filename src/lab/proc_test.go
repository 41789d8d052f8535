package lab

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestSpawnStderr: a daemon that writes each error to stdout and to stderr
// (bosh-dns-adapter's two sinks) has it once in its log when stderr has a
// file of its own, and twice when both go to one file.
func TestSpawnStderr(t *testing.T) {
	const script = `echo '{"message":"started"}'; echo '{"message":"failed"}'; echo 'failed' >&2`
	for _, tc := range []struct {
		name        string
		split       bool
		log, stderr string
	}{
		{"one file", false, "{\"message\":\"started\"}\n{\"message\":\"failed\"}\nfailed\n", ""},
		{"stderr on its own", true, "{\"message\":\"started\"}\n{\"message\":\"failed\"}\n", "failed\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := Spec{Log: filepath.Join(dir, "d.log"), Bin: "/bin/sh", Args: []string{"-c", script}}
			if tc.split {
				s.Stderr = filepath.Join(dir, "d.stderr.log")
			}
			p, err := Spawn(s)
			if err != nil {
				t.Fatal(err)
			}
			if err, ok := p.WaitTimeout(10 * time.Second); !ok || err != nil {
				t.Fatalf("exit: %v (ended: %v)", err, ok)
			}
			if diff := cmp.Diff(tc.log, p.Output()); diff != "" {
				t.Errorf("log (-want +got):\n%s", diff)
			}
			if tc.split {
				b, err := os.ReadFile(s.Stderr)
				if err != nil || string(b) != tc.stderr {
					t.Errorf("stderr log %q (%v), want %q", b, err, tc.stderr)
				}
			}
		})
	}
}
