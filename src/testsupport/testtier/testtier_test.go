package testtier

import (
	"flag"
	"testing"
)

func TestRequired(t *testing.T) {
	tests := []struct {
		name     string
		ci, tier string
		want     bool
	}{
		{"developer machine", "", "", false},
		{"CI=true", "true", "", true},
		{"CI=1", "1", "", true},
		{"CI=false", "false", "", false},
		{"CI=0", "0", "", false},
		{"tier variable", "", "1", true},
		{"tier variable not 1", "", "yes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(EnvCI, tt.ci)
			t.Setenv("NETMAN_REQUIRE_TESTTIER", tt.tier)
			if got := Required("NETMAN_REQUIRE_TESTTIER"); got != tt.want {
				t.Errorf("Required() = %v, want %v", got, tt.want)
			}
		})
	}
}

// recorder is a testing.TB that records how a test ended instead of ending.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Skip(args ...any)               { r.skipped = args[0].(string) }
func (r *recorder) Fatalf(format string, a ...any) { r.failed = format }

func TestUnavailable(t *testing.T) {
	t.Run("skips on a developer machine", func(t *testing.T) {
		t.Setenv(EnvCI, "")
		r := &recorder{TB: t}
		Unavailable(r, "ruby is not installed", "NETMAN_REQUIRE_TESTTIER")
		if r.skipped != "ruby is not installed" || r.failed != "" {
			t.Errorf("skipped %q failed %q, want a skip with the reason", r.skipped, r.failed)
		}
	})
	t.Run("fails under CI", func(t *testing.T) {
		t.Setenv(EnvCI, "true")
		r := &recorder{TB: t}
		Unavailable(r, "ruby is not installed")
		if r.failed == "" || r.skipped != "" {
			t.Errorf("skipped %q failed %q, want a failure", r.skipped, r.failed)
		}
	})
}

func TestLong(t *testing.T) {
	short := flag.Lookup("test.short").Value.String()
	t.Cleanup(func() { _ = flag.Set("test.short", short) })
	for _, tc := range []struct {
		name          string
		short         string
		ci            string
		skip, failure bool
	}{
		{"runs without -short", "false", "", false, false},
		{"runs without -short under CI", "false", "true", false, false},
		{"skips with -short", "true", "", true, false},
		{"fails with -short under CI", "true", "true", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := flag.Set("test.short", tc.short); err != nil {
				t.Fatal(err)
			}
			t.Setenv(EnvCI, tc.ci)
			r := &recorder{TB: t}
			Long(r, "compiles every package")
			if (r.skipped != "") != tc.skip || (r.failed != "") != tc.failure {
				t.Errorf("skipped %q failed %q; want skip %v, failure %v", r.skipped, r.failed, tc.skip, tc.failure)
			}
		})
	}
}
