package store

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
)

// Callers arriving while a read runs do not take its value (it may predate
// their writes): they share the one read that starts after it.
func TestStampGateSharesTheNextRead(t *testing.T) {
	var g stampGate
	var calls atomic.Int64
	release := make(chan struct{})
	started := make(chan struct{}, 10)
	fn := func(context.Context) (int64, error) {
		n := calls.Add(1)
		started <- struct{}{}
		if n == 1 {
			<-release
		}
		return n, nil
	}
	first := make(chan int64)
	go func() {
		v, _ := g.read(context.Background(), fn)
		first <- v
	}()
	<-started // read 1 runs

	const waiters = 50
	var wg sync.WaitGroup
	got := make([]int64, waiters)
	var queued sync.WaitGroup
	queued.Add(waiters)
	for i := range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			queued.Done()
			got[i], _ = g.read(context.Background(), fn)
		}()
	}
	queued.Wait()
	// Release read 1 only once every waiter has joined the next read: a
	// waiter still on its way when read 2 begins rightly gets read 3.
	for {
		g.mu.Lock()
		ok := g.next != nil && g.next.callers == waiters
		g.mu.Unlock()
		if ok {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	if v := <-first; v != 1 {
		t.Errorf("the first caller got read %d, want 1", v)
	}
	for i, v := range got {
		if v != 2 {
			t.Errorf("waiter %d got read %d, want 2 (the one begun after it arrived)", i, v)
		}
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d reads for %d callers, want 2", n, waiters+1)
	}
}
