package store

import (
	"context"

	"github.com/netman-release/netman/src/metrics"
)

// MetricSources are what both policy servers emit periodically, as
// upstream: totalPolicies and the connection pool's DB* gauges.
func (s *Store) MetricSources() []metrics.Source {
	total := metrics.Source{Name: "totalPolicies", Get: func(ctx context.Context) (float64, error) {
		ps, err := s.All(ctx)
		return float64(len(ps)), err
	}}
	return append([]metrics.Source{total}, s.db.MetricSources()...)
}
