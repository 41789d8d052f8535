package internalapi

import (
	"context"
	"sync"
	"time"
)

// PlainPollTTL is how long policy-server-internal reuses one database read
// of policies_last_updated for plain (not long-poll) requests. 1,000 cells
// polling every 5 s are 200 requests a second; with this they cost the
// database at most 20 reads a second, and an answer is at most 50 ms old,
// invisible next to the agents' poll interval.
const PlainPollTTL = 50 * time.Millisecond

// plainPollCache holds the last read; concurrent misses share one read.
type plainPollCache struct {
	ttl time.Duration
	mu  sync.Mutex // held across the read, so misses queue behind one query
	v   int64
	at  time.Time
}

func (c *plainPollCache) get(ctx context.Context, read func(context.Context) (int64, error)) (int64, error) {
	if c == nil || c.ttl <= 0 {
		return read(ctx)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < c.ttl {
		return c.v, nil
	}
	v, err := read(ctx)
	if err != nil {
		return 0, err
	}
	c.v, c.at = v, time.Now()
	return v, nil
}

// CachePlainPolls makes plain policies_last_updated and
// security_groups_last_updated requests reuse one database read (each) for
// ttl (PlainPollTTL in the shipped server; 0 reads every time, as
// upstream). It returns a for chaining.
func (a *API) CachePlainPolls(ttl time.Duration) *API {
	a.plainPolls = &plainPollCache{ttl: ttl}
	a.sgPlainPolls = &plainPollCache{ttl: ttl}
	return a
}
