package metrics

import "context"

// Source is a metric polled periodically, e.g. a lease count read from the
// database. Get should honour ctx: it is cancelled when the daemon stops.
type Source struct {
	Name string
	Unit string
	Get  func(ctx context.Context) (float64, error)
}
