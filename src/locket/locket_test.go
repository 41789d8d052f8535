package locket_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/locket"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

const key = "policy-server-asg-syncer"

func startLocket(t *testing.T) (*locket.Server, *mtlstest.Files) {
	t.Helper()
	files := mtlstest.NewTestFiles(t)
	srv := locket.NewServer()
	if err := srv.Start("127.0.0.1:0", files.ServerConfig(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv, files
}

func client(t *testing.T, srv *locket.Server, files *mtlstest.Files) *locket.Client {
	t.Helper()
	c, err := locket.NewClient(srv.Addr(), files.ClientConfig(t), locket.ClientOptions{KeepaliveTime: 10 * time.Second, KeepaliveTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestLockProtocol(t *testing.T) {
	srv, files := startLocket(t)
	a, b := client(t, srv, files), client(t, srv, files)
	ctx := context.Background()
	res := func(owner string) *locket.Resource {
		return &locket.Resource{Key: key, Owner: owner, Type: locket.LockType, TypeCode: locket.Lock}
	}
	if err := a.Lock(ctx, res("a"), 15); err != nil {
		t.Fatal(err)
	}
	if err := a.Lock(ctx, res("a"), 15); err != nil {
		t.Fatalf("owner refreshing its lock: %v", err)
	}
	if err := b.Lock(ctx, res("b"), 15); !locket.IsLockCollision(err) {
		t.Fatalf("second owner: %v, want lock-collision", err)
	}
	got, err := b.Fetch(ctx, key)
	if err != nil || *got != *res("a") {
		t.Fatalf("Fetch = %+v, %v", got, err)
	}
	if err := b.Release(ctx, res("b")); err == nil {
		t.Fatal("a non-owner released the lock")
	}
	if err := a.Release(ctx, res("a")); err != nil {
		t.Fatal(err)
	}
	if err := b.Lock(ctx, res("b"), 15); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if _, err := a.Fetch(ctx, "other"); err == nil {
		t.Fatal("Fetch of a free key succeeded")
	}
}

// worker counts how many holders run work at once.
type worker struct {
	active, maxActive, runs atomic.Int32
	cancelled               atomic.Int32
}

func (w *worker) work(ctx context.Context) error {
	n := w.active.Add(1)
	for {
		m := w.maxActive.Load()
		if n <= m || w.maxActive.CompareAndSwap(m, n) {
			break
		}
	}
	w.runs.Add(1)
	<-ctx.Done()
	w.cancelled.Add(1)
	w.active.Add(-1)
	return nil
}

// TestHoldOneAtATime: two syncers race for the lock; one works, the other
// waits; when the holder stops, the other takes over; when locket loses the
// holder's lock (expired elsewhere, taken by the other), the holder's work
// is cancelled.
func TestHoldOneAtATime(t *testing.T) {
	srv, files := startLocket(t)
	var w worker
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	var wg sync.WaitGroup
	hold := func(ctx context.Context, owner string) {
		defer wg.Done()
		lease := locket.NewLease(client(t, srv, files), key, owner, locket.DefaultSessionTTLInSeconds)
		if err := locket.Hold(ctx, logtest.New(t), lease, 20*time.Millisecond, w.work); err != nil {
			t.Errorf("Hold %s: %v", owner, err)
		}
	}
	wg.Add(2)
	go hold(ctxA, "a")
	eventually.True(t, "a to hold the lock", 10*time.Second, func() bool { return srv.Holder(key) == "a" && w.runs.Load() == 1 })
	go hold(ctxB, "b")
	time.Sleep(200 * time.Millisecond) // b retries ~10 times meanwhile
	if w.runs.Load() != 1 || srv.Holder(key) != "a" {
		t.Fatalf("b ran while a held the lock: runs=%d holder=%q", w.runs.Load(), srv.Holder(key))
	}

	stopA() // a releases on the way out; b takes over
	eventually.True(t, "b to take over", 10*time.Second, func() bool { return srv.Holder(key) == "b" && w.runs.Load() == 2 })

	// b's lock expired unnoticed and a third owner took it: b's next
	// refresh collides, and b's work is cancelled at once.
	srv.Reassign(key, "c", time.Minute)
	eventually.True(t, "b to stop working", 10*time.Second, func() bool { return w.cancelled.Load() == 2 })
	stopB()
	wg.Wait()
	if m := w.maxActive.Load(); m != 1 {
		t.Errorf("%d holders worked at once", m)
	}
}

// TestHoldLocketDown: a holder whose locket goes away stops working.
func TestHoldLocketDown(t *testing.T) {
	srv, files := startLocket(t)
	var w worker
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	lease := locket.NewLease(client(t, srv, files), key, "a", 15)
	go func() { done <- locket.Hold(ctx, logtest.New(t), lease, 20*time.Millisecond, w.work) }()
	eventually.True(t, "a to work", 10*time.Second, func() bool { return w.runs.Load() == 1 })
	srv.Stop()
	eventually.True(t, "work to be cancelled", 10*time.Second, func() bool { return w.cancelled.Load() == 1 })
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestHoldLogLines: upstream's lock runner lines, on the "locket-lock"
// session with the lock and its TTL; a holder kept out by another owner
// logs its first failed attempt only, not every retry; a holder that
// cannot reach locket logs every attempt.
func TestHoldLogLines(t *testing.T) {
	srv, files := startLocket(t)
	var w worker
	const session = "cfnetworking.policy-server-asg-syncer.locket-lock."
	hold := func(ctx context.Context, owner string, c *locket.Client) (*logtest.Capture, <-chan error) {
		logger, capture := logtest.NewCapture(t, "cfnetworking.policy-server-asg-syncer")
		done := make(chan error, 1)
		lease := locket.NewLease(c, key, owner, locket.DefaultSessionTTLInSeconds)
		go func() { done <- locket.Hold(ctx, logger, lease, 20*time.Millisecond, w.work) }()
		return capture, done
	}
	lockData := func(owner string) map[string]any {
		return map[string]any{
			"lock":           map[string]any{"key": key, "owner": owner, "type": "lock", "type_code": 1.0},
			"ttl_in_seconds": 15.0,
			"session":        "1", // lager's session id
		}
	}
	ctxA, stopA := context.WithCancel(context.Background())
	capA, doneA := hold(ctxA, "a", client(t, srv, files))
	eventually.True(t, "a to hold the lock", 10*time.Second, func() bool { return w.runs.Load() == 1 })
	ctxB, stopB := context.WithCancel(context.Background())
	capB, doneB := hold(ctxB, "b", client(t, srv, files))
	eventually.True(t, "b's first attempt", 10*time.Second, func() bool {
		return len(capB.Find(session+"failed-to-acquire-lock")) == 1
	})
	time.Sleep(300 * time.Millisecond) // b retries ~15 times
	stopB()
	stopA()
	for _, done := range []<-chan error{doneA, doneB} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	want := []logtest.Line{
		{Message: session + "started", Level: "info", Data: lockData("a")},
		{Message: session + "acquired-lock", Level: "info", Data: lockData("a")},
		{Message: session + "released-lock", Level: "info", Data: lockData("a")},
		{Message: session + "completed", Level: "info", Data: lockData("a")},
	}
	if diff := cmp.Diff(want, capA.Lines()); diff != "" {
		t.Errorf("holder's lines (-want +got):\n%s", diff)
	}
	failed := lockData("b")
	failed["error"] = "rpc error: code = AlreadyExists desc = lock-collision"
	want = []logtest.Line{
		{Message: session + "started", Level: "info", Data: lockData("b")},
		{Message: session + "failed-to-acquire-lock", Level: "error", Data: failed},
		{Message: session + "completed", Level: "info", Data: lockData("b")},
	}
	if diff := cmp.Diff(want, capB.Lines()); diff != "" {
		t.Errorf("standby's lines (-want +got):\n%s", diff)
	}

	// Locket down: every attempt fails and is logged.
	srv.Stop()
	ctxC, stopC := context.WithCancel(context.Background())
	capC, doneC := hold(ctxC, "c", client(t, srv, files))
	eventually.True(t, "c to log several failures", 10*time.Second, func() bool {
		return len(capC.Find(session+"failed-to-acquire-lock")) >= 3
	})
	stopC()
	if err := <-doneC; err != nil {
		t.Fatal(err)
	}
}
