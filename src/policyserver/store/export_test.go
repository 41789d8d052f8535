package store

import (
	"context"

	"github.com/netman-release/netman/src/policy"
)

// AllJoinedForTest runs the single-query load that snapshot loads fall
// back to under constant writes.
func (s *Store) AllJoinedForTest(ctx context.Context) ([]policy.Policy, error) {
	return s.policies(ctx, `SELECT `+policyColumns+policyJoins)
}
