package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// HasIPTables reports whether both iptables-<flavor>-restore and -save are
// installed.
func HasIPTables(f iptables.Flavor) bool {
	for _, suffix := range []string{"-restore", "-save"} {
		if _, err := exec.LookPath("iptables-" + string(f) + suffix); err != nil {
			return false
		}
	}
	return true
}

// RequireIPTables skips the test when the flavor's binaries are missing —
// or fails it under CI or where privileged tests are required (scripts/test
// installs Debian's iptables, which ships both flavors).
func RequireIPTables(tb testing.TB, f iptables.Flavor) {
	tb.Helper()
	if HasIPTables(f) {
		return
	}
	testtier.Unavailable(tb, fmt.Sprintf("iptables-%s-restore/-save not installed (scripts/test installs Debian's iptables)", f), EnvRequireRoot)
}

// IPTablesFlavors is the iptables backends a privileged test should run
// against: nf_tables and legacy, each of those installed; no flavor at
// all skips the test, or fails it where privileged tests are required.
func IPTablesFlavors(tb testing.TB) []iptables.Flavor {
	tb.Helper()
	var out []iptables.Flavor
	for _, f := range []iptables.Flavor{iptables.FlavorNFT, iptables.FlavorLegacy} {
		if HasIPTables(f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		testtier.Unavailable(tb, "neither iptables-nft nor iptables-legacy is installed (scripts/test installs Debian's iptables)", EnvRequireRoot)
	}
	return out
}

// IPTablesBinDir returns a directory holding iptables, iptables-restore and
// iptables-save for flavor f, like garden's iptables_bin_dir that BOSH
// scripts put first in PATH for the tools that run iptables by name.
func IPTablesBinDir(tb testing.TB, f iptables.Flavor) string {
	tb.Helper()
	RequireIPTables(tb, f)
	dir := tb.TempDir()
	for _, suffix := range []string{"", "-restore", "-save"} {
		target, err := exec.LookPath("iptables-" + string(f) + suffix)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(dir, "iptables"+suffix)); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}
