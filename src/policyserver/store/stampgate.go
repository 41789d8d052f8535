package store

import (
	"context"
	"sync"
	"time"
)

// stampGate makes concurrent reads of policies_last_updated share one
// query. After each policy change every agent asks for its policies at
// once, and each such call checks the stamp before using the snapshot: at
// a thousand cells that was a thousand identical queries queued on the
// pool, and the queue (not the query) made the policy fetch's tail. A
// caller may only use a read that began after it arrived (it must see
// every write committed before its call), so a caller arriving while a
// read runs waits for the next one, which starts as soon as the running
// one ends and serves everyone who arrived meanwhile: at most one stamp
// query runs, and each caller waits for at most two.
type stampGate struct {
	mu      sync.Mutex
	running bool
	next    *stampRead // the read that starts when the running one ends
}

type stampRead struct {
	done    chan struct{}
	v       int64
	err     error
	callers int // callers sharing it (under the gate's mu until it starts)
}

// stampReadTimeout bounds one shared read: it serves callers other than
// the one that started it, so it must not die with that caller's context.
const stampReadTimeout = 30 * time.Second

func (g *stampGate) read(ctx context.Context, fn func(context.Context) (int64, error)) (int64, error) {
	g.mu.Lock()
	r := g.next
	if r == nil {
		r = &stampRead{done: make(chan struct{})}
		if g.running {
			g.next = r
		} else {
			g.running = true
			go g.run(r, fn)
		}
	}
	r.callers++
	g.mu.Unlock()
	select {
	case <-r.done:
		return r.v, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// run performs r, then each read queued behind it, until none is.
func (g *stampGate) run(r *stampRead, fn func(context.Context) (int64, error)) {
	for r != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stampReadTimeout)
		r.v, r.err = fn(ctx)
		cancel()
		close(r.done)
		g.mu.Lock()
		r, g.next = g.next, nil
		if r == nil {
			g.running = false
		}
		g.mu.Unlock()
	}
}
