// Package ports hands tests free TCP ports (package localports: below the
// ephemeral range, reserved across parallel test processes).
package ports

import (
	"testing"

	"github.com/netman-release/netman/src/localports"
)

// Free returns a TCP port that is free on host, outside the ephemeral
// range, and reserved for tb until its cleanup.
func Free(tb testing.TB, host string) int {
	tb.Helper()
	port, release, err := localports.Reserve(host)
	if err != nil {
		tb.Fatalf("finding a free port on %s: %v", host, err)
	}
	tb.Cleanup(release)
	return port
}
