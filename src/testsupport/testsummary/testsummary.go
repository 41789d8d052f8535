// Package testsummary reads `go test -json` and prints what plain `go test`
// prints (one ok/FAIL line per package, the full output of failing tests),
// plus every skipped test with its reason, inline as it happens and again as
// a list at the end, so a CI log shows which tests did not run. It closes
// with two count lines:
//
//	packages: 12 ok, 0 failed, 3 without tests
//	tests: 340 passed, 0 failed, 5 skipped
//
// Tests include subtests. scripts/lib/testsummary.go is its command.
package testsummary

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action     string
	Package    string
	Test       string
	Output     string
	ImportPath string // build-output events
}

type testKey struct{ pkg, test string }

type summary struct {
	out                          io.Writer
	buf                          map[testKey][]string // output of tests still running
	passed, failed, skipped      int
	pkgOK, pkgFailed, pkgNoTests int
	failedTests                  []string
	skippedTests                 []string // "pkg.Test: reason"
}

// Run summarises the `go test -json` stream in and writes the summary to
// out. It reports whether any test or package failed.
func Run(in io.Reader, out io.Writer) (failed bool, err error) {
	s := &summary{out: out, buf: map[testKey][]string{}}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		s.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("reading input: %w", err)
	}
	return s.report(), nil
}

func (s *summary) line(raw []byte) {
	var e event
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &e) != nil {
		fmt.Fprintf(s.out, "%s\n", raw) // not an event: pass it through
		return
	}
	if e.Test != "" {
		s.testEvent(e)
		return
	}
	switch e.Action {
	case "build-output":
		fmt.Fprint(s.out, e.Output)
	case "output":
		// Package-level output: the ok/FAIL/? line, panics and data races
		// outside any test. The bare PASS line is noise plain go test hides.
		if e.Output != "PASS\n" {
			fmt.Fprint(s.out, e.Output)
		}
	case "pass":
		s.pkgOK++
	case "skip":
		s.pkgNoTests++
	case "fail":
		s.pkgFailed++
		s.flushUnfinished(e.Package)
	}
}

func (s *summary) testEvent(e event) {
	k := testKey{e.Package, e.Test}
	switch e.Action {
	case "output":
		if !strings.HasPrefix(e.Output, "=== ") { // RUN, PAUSE, CONT, NAME
			s.buf[k] = append(s.buf[k], e.Output)
		}
	case "pass":
		s.passed++
		delete(s.buf, k)
	case "skip":
		s.skipped++
		s.skippedTests = append(s.skippedTests, k.pkg+"."+k.test+": "+skipReason(s.buf[k]))
		s.flush(k)
	case "fail":
		s.failed++
		s.failedTests = append(s.failedTests, e.Package+"."+e.Test)
		s.flush(k)
	}
}

// flush prints a test's buffered output. With -p 2 several packages report at
// once, so the result line names the package: "--- SKIP: pkg.TestX (0.00s)".
func (s *summary) flush(k testKey) {
	for _, l := range s.buf[k] {
		trimmed := strings.TrimLeft(l, " ")
		for _, verdict := range []string{"--- FAIL: ", "--- SKIP: "} {
			if strings.HasPrefix(trimmed, verdict+k.test) {
				indent := l[:len(l)-len(trimmed)]
				l = indent + verdict + k.pkg + "." + strings.TrimPrefix(trimmed, verdict)
				break
			}
		}
		fmt.Fprint(s.out, l)
	}
	delete(s.buf, k)
}

// flushUnfinished prints the output of tests of a failed package that never
// reported a result (the binary crashed, timed out or exited mid-test) and
// counts them as failed.
func (s *summary) flushUnfinished(pkg string) {
	var keys []testKey
	for k := range s.buf {
		if k.pkg == pkg {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].test < keys[j].test })
	for _, k := range keys {
		fmt.Fprintf(s.out, "--- FAIL: %s.%s (no result: the test binary exited)\n", k.pkg, k.test)
		s.failed++
		s.failedTests = append(s.failedTests, k.pkg+"."+k.test)
		s.flush(k)
	}
}

// skipReason is what a skipped test logged: its output lines other than the
// verdict, each without the "file_test.go:12: " location, joined by "; ".
func skipReason(lines []string) string {
	var parts []string
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "--- SKIP: ") {
			continue
		}
		if i := strings.Index(l, ": "); i > 0 && strings.Contains(l[:i], ".go:") && !strings.Contains(l[:i], " ") {
			l = l[i+2:]
		}
		parts = append(parts, l)
	}
	if len(parts) == 0 {
		return "(no reason given)"
	}
	return strings.Join(parts, "; ")
}

// report prints the closing lines and tells whether anything failed.
func (s *summary) report() bool {
	if len(s.skippedTests) > 0 {
		fmt.Fprintln(s.out, "skipped tests:")
		for _, t := range s.skippedTests {
			fmt.Fprintln(s.out, "   ", t)
		}
	}
	if len(s.failedTests) > 0 {
		fmt.Fprintln(s.out, "failed tests:")
		for _, t := range s.failedTests {
			fmt.Fprintln(s.out, "   ", t)
		}
	}
	fmt.Fprintf(s.out, "packages: %d ok, %d failed, %d without tests\n", s.pkgOK, s.pkgFailed, s.pkgNoTests)
	fmt.Fprintf(s.out, "tests: %d passed, %d failed, %d skipped\n", s.passed, s.failed, s.skipped)
	return s.failed > 0 || s.pkgFailed > 0
}
