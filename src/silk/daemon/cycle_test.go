package daemon

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// fakeController holds leases like silk-controller; its failures are set by
// the test.
type fakeController struct {
	mu       sync.Mutex
	leases   []lease.Lease
	renewErr error
	listErr  error
	renewed  []lease.Lease
}

func (f *fakeController) Renew(_ context.Context, l lease.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.renewErr != nil {
		return f.renewErr
	}
	f.renewed = append(f.renewed, l)
	return nil
}

func (f *fakeController) RoutableLeases(context.Context) ([]lease.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]lease.Lease(nil), f.leases...), f.listErr
}

func newTestSender(t testing.TB) *metrics.Sender {
	t.Helper()
	s, err := metrics.NewSender(nil, "silk-daemon", 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func counter(s *metrics.Sender, name string) uint64 {
	v, _ := s.Registry().Counter(name)
	return v
}

func newTestCycle(t *testing.T, fc *fakeController, tolerance time.Duration) (*Cycle, *fakeKernel, *metrics.Sender, *time.Time) {
	k, conv := newFakeConverger()
	sender := newTestSender(t)
	c := NewCycle(logtest.New(t), fc, conv, remote(17), sender, tolerance)
	now := time.Unix(1_000_000, 0)
	c.now = func() time.Time { return now }
	c.lastRenewal = now
	return c, k, sender, &now
}

func TestCycleRenewsListsAndConverges(t *testing.T) {
	fc := &fakeController{leases: []lease.Lease{remote(17), remote(1), remote(2)}}
	c, k, sender, _ := newTestCycle(t, fc, time.Hour)
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(fc.renewed) != 1 || fc.renewed[0] != remote(17) {
		t.Errorf("renewed %v, want the cell's own lease", fc.renewed)
	}
	if len(k.arp) != 2 {
		t.Errorf("converged %d ARP entries, want 2", len(k.arp))
	}
	if v, _ := sender.Registry().Value("numberLeases"); v.Value != 3 {
		t.Errorf("numberLeases = %v, want 3", v.Value)
	}
	if counter(sender, "renewSuccess") != 1 || counter(sender, "convergeSuccess") != 1 {
		t.Errorf("counters: renewSuccess %d, convergeSuccess %d", counter(sender, "renewSuccess"), counter(sender, "convergeSuccess"))
	}
}

func TestCycleRenewFailures(t *testing.T) {
	conflict := (&jsonhttp.StatusError{Code: http.StatusConflict, Body: `{"error": "renew-subnet-lease: lease mismatch"}`}).
		Reword("non-retriable: http status 409: renew-subnet-lease: lease mismatch") // as controller.Client words it
	unreachable := errors.New("http client do: dial tcp 127.0.0.1:4103: connect: connection refused")

	t.Run("409 is fatal at once, with upstream's message", func(t *testing.T) {
		c, _, sender, _ := newTestCycle(t, &fakeController{renewErr: conflict}, time.Hour)
		err := c.Run(context.Background())
		if !lifecycle.IsFatal(err) || !strings.Contains(err.Error(), "fatal: renew lease: non-retriable: http status 409") {
			t.Fatalf("err = %v, want a fatal non-retriable renew error", err)
		}
		if counter(sender, "renewFailure") != 1 {
			t.Error("renewFailure not counted")
		}
	})

	t.Run("an unreachable controller is tolerated until the partition tolerance", func(t *testing.T) {
		fc := &fakeController{leases: []lease.Lease{remote(17), remote(1)}}
		c, k, sender, now := newTestCycle(t, fc, time.Hour)
		if err := c.Run(context.Background()); err != nil {
			t.Fatal(err)
		}
		fc.renewErr = unreachable
		fc.leases = nil
		*now = now.Add(59 * time.Minute)
		err := c.Run(context.Background())
		if err == nil || lifecycle.IsFatal(err) {
			t.Fatalf("within tolerance: err = %v, want a non-fatal error", err)
		}
		if len(k.arp) != 1 || counter(sender, "convergeSuccess") != 1 {
			t.Error("a failed renewal must leave the routes as they are and skip converge")
		}
		*now = now.Add(time.Minute)
		if err := c.Run(context.Background()); !lifecycle.IsFatal(err) {
			t.Fatalf("at the tolerance: err = %v, want fatal", err)
		}
		if counter(sender, "renewFailure") != 2 {
			t.Errorf("renewFailure = %d, want 2", counter(sender, "renewFailure"))
		}
	})

	t.Run("the clock starts when the cycle is made", func(t *testing.T) {
		c, _, _, now := newTestCycle(t, &fakeController{renewErr: unreachable}, time.Hour)
		*now = now.Add(time.Hour)
		if err := c.Run(context.Background()); !lifecycle.IsFatal(err) {
			t.Fatalf("err = %v, want fatal", err)
		}
	})
}

func TestCycleListAndConvergeFailures(t *testing.T) {
	fc := &fakeController{listErr: errors.New("http status 500: boom")}
	c, k, sender, _ := newTestCycle(t, fc, time.Hour)
	if err := c.Run(context.Background()); err == nil || lifecycle.IsFatal(err) || !strings.Contains(err.Error(), "get routable leases") {
		t.Fatalf("err = %v", err)
	}
	if _, ok := sender.Registry().Value("numberLeases"); ok {
		t.Error("numberLeases sent without a lease list")
	}

	fc.listErr = nil
	fc.leases = []lease.Lease{remote(1)}
	k.fail["NeighSet"] = errors.New("no buffer space")
	if err := c.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "converge leases") {
		t.Fatalf("err = %v", err)
	}
	if counter(sender, "convergeFailure") != 1 || counter(sender, "convergeSuccess") != 0 {
		t.Error("convergeFailure not counted")
	}
}

// Upstream's lines for a good poll: vxlan_planner's "renew-lease" and
// "converge-leases" at debug, with the lease and every routable lease.
func TestCycleLogLines(t *testing.T) {
	fc := &fakeController{leases: []lease.Lease{remote(17), remote(1)}}
	c, _, _, _ := newTestCycle(t, fc, time.Hour)
	logger, capture := logtest.NewCapture(t, "cfnetworking.silk-daemon")
	c.Logger = logger
	if err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	asData := func(ls ...lease.Lease) []any {
		var out []any
		for _, l := range ls {
			out = append(out, map[string]any{"underlay_ip": l.UnderlayIP, "overlay_subnet": l.OverlaySubnet, "overlay_hardware_addr": l.OverlayHardwareAddr})
		}
		return out
	}
	want := []logtest.Line{
		{Message: "cfnetworking.silk-daemon.renew-lease", Level: "debug", Data: map[string]any{"lease": asData(remote(17))[0]}},
		{Message: "cfnetworking.silk-daemon.converge-leases", Level: "debug", Data: map[string]any{"leases": asData(remote(17), remote(1))}},
	}
	got := append(capture.Find("cfnetworking.silk-daemon.renew-lease"), capture.Find("cfnetworking.silk-daemon.converge-leases")...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	if l := capture.Find("cfnetworking.silk-daemon.converged"); len(l) != 1 || l[0].Level != "debug" || l[0].Data["arp"] != 1.0 {
		t.Errorf("converged = %+v, want one debug line with the counts", l)
	}
}

// TestPollCycleLogLines: the vxlan-poller as Run wires it logs a failed
// cycle as upstream's poller does, "poll-cycle" at error with only the
// error, on the daemon's root logger; a good cycle writes upstream's
// converge-leases line there too.
func TestPollCycleLogLines(t *testing.T) {
	logger, capture := logtest.NewCapture(t, "cfnetworking.silk-daemon")
	run := func(fc *fakeController, until func() bool) {
		t.Helper()
		c, _, _, _ := newTestCycle(t, fc, time.Hour)
		c.Logger = logger
		proc := ifrit.Invoke(vxlanPoller(logger, 10*time.Millisecond, 0, c.Run))
		eventually.True(t, "poll lines", 10*time.Second, until)
		proc.Signal(os.Interrupt)
		if err := <-proc.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	const p = "cfnetworking.silk-daemon."
	run(&fakeController{listErr: errors.New("connection refused")}, func() bool { return len(capture.Find(p+"poll-cycle")) >= 2 })
	for _, l := range capture.Find(p + "poll-cycle") {
		want := logtest.Line{Message: p + "poll-cycle", Level: "error", Data: map[string]any{"error": "get routable leases: connection refused"}}
		if diff := cmp.Diff(want, l); diff != "" {
			t.Errorf("poll-cycle line (-want +got):\n%s", diff)
		}
	}
	run(&fakeController{leases: []lease.Lease{remote(17)}}, func() bool { return len(capture.Find(p+"converge-leases")) >= 1 })
	if l := capture.Find(p + "converge-leases")[0]; l.Level != "debug" || len(l.Data) != 1 || l.Data["leases"] == nil {
		t.Errorf("converge-leases line %+v, want debug {leases}", l)
	}
}
