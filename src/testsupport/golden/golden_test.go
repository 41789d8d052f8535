package golden

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recorder is a test that keeps its failure instead of failing.
type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
}

func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.golden")
	if err := os.WriteFile(path, []byte("a\nb\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	if Check(r, path, []byte("a\nb\n")); r.failure != "" {
		t.Errorf("equal content failed: %s", r.failure)
	}
	if Check(r, path, []byte("a\nc\n")); !strings.Contains(r.failure, "x.golden differs (-golden +got)") {
		t.Errorf("different content: %q", r.failure)
	}
	r.failure = ""
	if Check(r, path+".missing", nil); !strings.Contains(r.failure, "run go test -update to create it") {
		t.Errorf("missing file: %q", r.failure)
	}
}
