// Package e2e holds the end-to-end tests: real binaries in network-namespace
// cells on an underlay bridge (src/testsupport/celltest).
package e2e

import (
	"os"
	"testing"

	"github.com/netman-release/netman/src/testsupport/celltest"
)

func TestMain(m *testing.M) { os.Exit(celltest.Main(m)) }

// onEachBackend runs run once per enforcement backend, as subtests named
// after it (iptables, nftables); parallel runs the two at once.
func onEachBackend(t *testing.T, parallel bool, run func(t *testing.T, backend string)) {
	for _, b := range []string{celltest.IPTables, celltest.NFTables} {
		t.Run(b, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			run(t, b)
		})
	}
}
