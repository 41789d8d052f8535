package testsummary

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// stream renders events as `go test -json` lines.
func stream(t *testing.T, events ...map[string]string) string {
	t.Helper()
	var b strings.Builder
	for _, e := range events {
		raw, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		b.Write(raw)
		b.WriteByte('\n')
	}
	return b.String()
}

func ev(action, pkg, test, output string) map[string]string {
	m := map[string]string{"Action": action, "Package": pkg}
	if test != "" {
		m["Test"] = test
	}
	if output != "" {
		m["Output"] = output
	}
	return m
}

func TestRunListsSkippedTestsAtTheEnd(t *testing.T) {
	in := stream(t,
		ev("run", "p/db", "TestStore", ""),
		ev("output", "p/db", "TestStore", "=== RUN   TestStore\n"),
		ev("run", "p/db", "TestStore/postgres", ""),
		ev("output", "p/db", "TestStore/postgres", "    dbtest.go:106: postgres unreachable (scripts/test starts it): dial tcp: refused\n"),
		ev("output", "p/db", "TestStore/postgres", "    --- SKIP: TestStore/postgres (0.01s)\n"),
		ev("skip", "p/db", "TestStore/postgres", ""),
		ev("pass", "p/db", "TestStore", ""),
		ev("output", "p/net", "TestVTEP", "    netnstest.go:32: privileged test: needs root\n"),
		ev("output", "p/net", "TestVTEP", "--- SKIP: TestVTEP (0.00s)\n"),
		ev("skip", "p/net", "TestVTEP", ""),
		ev("output", "p/net", "TestBare", "--- SKIP: TestBare (0.00s)\n"),
		ev("skip", "p/net", "TestBare", ""),
		ev("output", "p/net", "", "ok  \tp/net\t0.1s\n"),
		ev("pass", "p/net", "", ""),
		ev("output", "p/db", "", "ok  \tp/db\t0.2s\n"),
		ev("pass", "p/db", "", ""),
	)
	var out strings.Builder
	failed, err := Run(strings.NewReader(in), &out)
	if err != nil || failed {
		t.Fatalf("Run = %v, %v; want no failure", failed, err)
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	i := 0
	for i < len(lines) && lines[i] != "skipped tests:" {
		i++
	}
	if i == len(lines) {
		t.Fatalf("no skipped tests list in:\n%s", out.String())
	}
	want := []string{
		"skipped tests:",
		"    p/db.TestStore/postgres: postgres unreachable (scripts/test starts it): dial tcp: refused",
		"    p/net.TestVTEP: privileged test: needs root",
		"    p/net.TestBare: (no reason given)",
		"packages: 2 ok, 0 failed, 0 without tests",
		"tests: 1 passed, 0 failed, 3 skipped",
	}
	if diff := cmp.Diff(want, lines[i:]); diff != "" {
		t.Errorf("closing lines (-want +got):\n%s", diff)
	}
	// Inline, the verdict names the package.
	if !strings.Contains(out.String(), "--- SKIP: p/net.TestVTEP (0.00s)") {
		t.Errorf("inline skip line missing:\n%s", out.String())
	}
}

func TestRunFailures(t *testing.T) {
	in := stream(t,
		ev("output", "p/a", "TestBad", "    a_test.go:9: boom\n"),
		ev("output", "p/a", "TestBad", "--- FAIL: TestBad (0.00s)\n"),
		ev("fail", "p/a", "TestBad", ""),
		ev("output", "p/a", "TestCrash", "    a_test.go:20: started\n"),
		ev("output", "p/a", "", "FAIL\tp/a\t0.1s\n"),
		ev("fail", "p/a", "", ""),
	)
	var out strings.Builder
	failed, err := Run(strings.NewReader(in), &out)
	if err != nil || !failed {
		t.Fatalf("Run = %v, %v; want a failure", failed, err)
	}
	for _, w := range []string{
		"--- FAIL: p/a.TestBad (0.00s)",
		"--- FAIL: p/a.TestCrash (no result: the test binary exited)",
		"failed tests:\n    p/a.TestBad\n    p/a.TestCrash\n",
		"tests: 0 passed, 2 failed, 0 skipped",
	} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}
