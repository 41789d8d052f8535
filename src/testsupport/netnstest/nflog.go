package netnstest

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/testsupport/testtier"
)

// Files that coordinate LogAllNetns across test processes: go test runs
// packages in parallel, and the sysctl is host-wide.
const (
	nfLogAllNetns = "/proc/sys/net/netfilter/nf_log_all_netns"
	nfLogLock     = "/run/netman-test-nf-log-all-netns.lock"
	nfLogSaved    = "/run/netman-test-nf-log-all-netns.saved"
)

// LogAllNetns turns on net.netfilter.nf_log_all_netns (without it LOG
// rules in namespaces other than the initial one print nothing) for the
// test. Tests in every process share it: each holds a shared flock while it
// needs the setting, and the last one to finish restores the value the
// first one found.
func LogAllNetns(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb)
	f, err := os.OpenFile(nfLogLock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	fd := int(f.Fd())
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	if _, err := os.Stat(nfLogSaved); errors.Is(err, os.ErrNotExist) {
		old, err := os.ReadFile(nfLogAllNetns)
		if err != nil {
			f.Close()
			testtier.Unavailable(tb, fmt.Sprintf("the kernel has no nf_log_all_netns sysctl, so LOG rules in test namespaces print nothing: %v", err), EnvRequireRoot)
			return
		}
		if err := os.WriteFile(nfLogSaved, old, 0o600); err != nil {
			f.Close()
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(nfLogAllNetns, []byte("1\n"), 0o644); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	// Downgrade to shared: other tests may join while this one runs.
	if err := unix.Flock(fd, unix.LOCK_SH); err != nil {
		f.Close()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		defer f.Close()
		_ = unix.Flock(fd, unix.LOCK_UN)
		// Only the last holder gets the exclusive lock: it restores.
		if unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB) != nil {
			return
		}
		if old, err := os.ReadFile(nfLogSaved); err == nil {
			if err := os.WriteFile(nfLogAllNetns, old, 0o644); err != nil {
				tb.Errorf("restore nf_log_all_netns: %v", err)
			}
			_ = os.Remove(nfLogSaved)
		}
	})
}
