// Package discoverytest provides service discovery's neighbours for tests:
// an in-process NATS server and a route emitter (package routes), the
// daemons started in-process, and helpers for process tests.
package discoverytest

import (
	"testing"

	"github.com/netman-release/netman/src/discovery/routes"
)

// The stand-ins live in package routes (the lab uses them too).
type (
	NATS       = routes.NATS
	NATSConfig = routes.NATSConfig
	Instance   = routes.Instance
	Emitter    = routes.Emitter
)

// NewNATS starts an in-process NATS server (routes.NewNATS).
func NewNATS(cfg NATSConfig) (*NATS, error) { return routes.NewNATS(cfg) }

// NewEmitter connects a route emitter to url (routes.NewEmitter).
var NewEmitter = routes.NewEmitter

// StartNATS is NewNATS on a free loopback port, shut down when the test ends.
func StartNATS(tb testing.TB, cfg NATSConfig) *NATS {
	tb.Helper()
	n, err := NewNATS(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(n.Stop)
	return n
}
