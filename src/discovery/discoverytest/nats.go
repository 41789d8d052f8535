// Package discoverytest provides service discovery's neighbours for tests:
// an in-process NATS server and a route emitter (src/standin/natsserver and
// routeemitter), the daemons started in-process, and helpers for process
// tests.
package discoverytest

import (
	"testing"

	"github.com/netman-release/netman/src/standin/natsserver"
	"github.com/netman-release/netman/src/standin/routeemitter"
)

// The stand-ins live in src/standin (the lab runs them too).
type (
	NATS       = natsserver.Server
	NATSConfig = natsserver.Config
	Instance   = routeemitter.Instance
	Emitter    = routeemitter.Emitter
)

// NewNATS starts an in-process NATS server (natsserver.New).
func NewNATS(cfg NATSConfig) (*NATS, error) { return natsserver.New(cfg) }

// NewEmitter connects a route emitter to url (routeemitter.New).
var NewEmitter = routeemitter.New

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
