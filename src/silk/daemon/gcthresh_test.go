package daemon

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"
)

func TestGCThreshCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gc_thresh3")
	if err := os.WriteFile(path, []byte("1024\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	logger := lager.NewLogger("test")
	logger.RegisterSink(lager.NewWriterSink(&buf, lager.INFO))
	g := newGCThreshCheck(logger, path)

	g.check(1000)
	if buf.Len() != 0 {
		t.Fatalf("warned below the limit: %s", buf.String())
	}
	g.check(1024)
	if !strings.Contains(buf.String(), "neighbor-table-near-gc-thresh3") || !strings.Contains(buf.String(), `"gc_thresh3":1024`) || !strings.Contains(buf.String(), `"arp_entries":1024`) {
		t.Fatalf("no warning at the limit: %s", buf.String())
	}
	buf.Reset()
	g.check(1024)
	if buf.Len() != 0 {
		t.Errorf("warned again for an unchanged count: %s", buf.String())
	}

	// Inside a non-initial namespace the file does not exist: no warning.
	missing := newGCThreshCheck(logger, filepath.Join(t.TempDir(), "absent"))
	missing.check(5000)
	var disabled *gcThreshCheck
	disabled.check(5000)
	if buf.Len() != 0 {
		t.Errorf("warned without a limit to compare with: %s", buf.String())
	}
}
