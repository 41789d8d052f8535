// Package e2e holds the end-to-end tests: real binaries in network-namespace
// cells on an underlay bridge (src/testsupport/celltest).
package e2e

import (
	"os"
	"testing"

	"github.com/netman-release/netman/src/testsupport/celltest"
)

func TestMain(m *testing.M) { os.Exit(celltest.Main(m)) }
