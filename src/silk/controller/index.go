package controller

import (
	"context"
	"sync"
	"time"

	"github.com/netman-release/netman/src/jsonenc"
	"github.com/netman-release/netman/src/silk/lease"
)

// IndexCacheTTL is how long a GET /leases answer is reused. Every cell polls
// the index (upstream: every 30 s); serving a burst of polls from one query
// keeps the database out of the hot path. Local acquires and releases clear
// it at once, so only changes made through another controller sharing the
// database, or a lease crossing its expiry, can take this long to show.
const IndexCacheTTL = time.Second

// indexCache holds the encoded index body. One request refills it while
// concurrent ones wait for that result instead of each querying.
type indexCache struct {
	ttl    time.Duration
	fillMu sync.Mutex
	mu     sync.Mutex
	body   []byte
	until  time.Time
	gen    uint64
}

func (c *indexCache) get(ctx context.Context, fill func(context.Context) ([]byte, error)) ([]byte, error) {
	if c.ttl <= 0 {
		return fill(ctx)
	}
	c.fillMu.Lock()
	defer c.fillMu.Unlock()
	c.mu.Lock()
	if c.body != nil && time.Now().Before(c.until) {
		body := c.body
		c.mu.Unlock()
		return body, nil
	}
	gen := c.gen
	c.mu.Unlock()

	body, err := fill(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	// A write that landed while we queried may be missing from body.
	if c.gen == gen {
		c.body, c.until = body, time.Now().Add(c.ttl)
	}
	c.mu.Unlock()
	return body, nil
}

func (c *indexCache) invalidate() {
	c.mu.Lock()
	c.gen++
	c.body = nil
	c.mu.Unlock()
}

// appendIndex encodes {"leases":[...]} without reflection; the fields are
// addresses, CIDRs and MACs, so the fast path nearly always applies.
func appendIndex(buf []byte, leases []lease.Lease) []byte {
	buf = append(buf, `{"leases":[`...)
	for i, l := range leases {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"underlay_ip":`...)
		buf = jsonenc.AppendString(buf, l.UnderlayIP)
		buf = append(buf, `,"overlay_subnet":`...)
		buf = jsonenc.AppendString(buf, l.OverlaySubnet)
		buf = append(buf, `,"overlay_hardware_addr":`...)
		buf = jsonenc.AppendString(buf, l.OverlayHardwareAddr)
		buf = append(buf, '}')
	}
	return append(buf, "]}"...)
}
