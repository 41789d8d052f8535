package iptableslogger

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/eventually"
)

const testPoll = 5 * time.Millisecond

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func waitLines(t *testing.T, r *recorder, want ...string) {
	t.Helper()
	eventually.True(t, "lines "+strings.Join(want, ","), 10*time.Second, func() bool {
		got, _, _ := r.snapshot()
		return len(got) >= len(want)
	})
	got, _, _ := r.snapshot()
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("lines (-want +got):\n%s", diff)
	}
}

func openTestFile(t *testing.T, path string) Tailer {
	t.Helper()
	tl, err := OpenKernelLog(path, testPoll)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	if tl.Kind() != "file" {
		t.Fatalf("kind = %q", tl.Kind())
	}
	return tl
}

func TestFileTailerFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendTo(t, path, "before start\nunterminated before start")
	tl := openTestFile(t, path)
	r := &recorder{}
	stop := runTailer(t, tl, r)

	// Only what is written after opening; a line is handed over once its
	// newline arrives.
	appendTo(t, path, " still\none\ntw")
	waitLines(t, r, " still", "one")
	appendTo(t, path, "o\n")
	waitLines(t, r, " still", "one", "two")
	eventually.True(t, "a flush once caught up", 10*time.Second, func() bool { _, _, f := r.snapshot(); return f > 0 })

	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	// Run again goes on from where it was.
	appendTo(t, path, "three\n")
	runTailer(t, tl, r)
	waitLines(t, r, " still", "one", "two", "three")
}

func TestFileTailerRotation(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rotate func(t *testing.T, path string)
	}{
		{"rename and create", func(t *testing.T, path string) {
			// The writer finishes its line in the old file after the rename.
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			appendTo(t, path+".1", "old tail\n")
			appendTo(t, path, "")
		}},
		{"remove and create", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			time.Sleep(5 * testPoll) // the tailer sees the path missing
			appendTo(t, path, "")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kern.log")
			appendTo(t, path, "")
			r := &recorder{}
			runTailer(t, openTestFile(t, path), r)
			appendTo(t, path, "first\n")
			waitLines(t, r, "first")
			tc.rotate(t, path)
			appendTo(t, path, "new file\n")
			want := []string{"first", "new file"}
			if tc.name == "rename and create" {
				want = []string{"first", "old tail", "new file"}
			}
			waitLines(t, r, want...)
		})
	}
}

func TestFileTailerTruncation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendTo(t, path, "")
	r := &recorder{}
	runTailer(t, openTestFile(t, path), r)
	appendTo(t, path, "a fairly long first line\n")
	waitLines(t, r, "a fairly long first line")
	// copytruncate
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * testPoll)
	appendTo(t, path, "short\n")
	waitLines(t, r, "a fairly long first line", "short")
}

func TestFileTailerOverlongLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kern.log")
	appendTo(t, path, "")
	r := &recorder{}
	runTailer(t, openTestFile(t, path), r)
	long := strings.Repeat("x", maxLine+10)
	appendTo(t, path, long[:maxLine/2])
	time.Sleep(5 * testPoll)
	appendTo(t, path, long[maxLine/2:]+"\nafter\n"+long+"\nlast\n")
	waitLines(t, r, "after", "last")
	if _, lost, _ := r.snapshot(); lost != 2 {
		t.Errorf("lost = %d, want 2", lost)
	}
}

func TestOpenKernelLogMissing(t *testing.T) {
	if _, err := OpenKernelLog(filepath.Join(t.TempDir(), "kern.log"), 0); !os.IsNotExist(err) {
		t.Errorf("err = %v, want not exist", err)
	}
}
