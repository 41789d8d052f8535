package lifecycle_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/eventually"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func constant(v float64) func(context.Context) (float64, error) {
	return func(context.Context) (float64, error) { return v, nil }
}

func TestMetricsEmitterSendsUptimeAndSources(t *testing.T) {
	logger, sink := newTestLogger()
	sender, err := metrics.NewSender(logger, "silk-controller", 0)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Unix(1000, 0)}
	var badCalls atomic.Int32
	sources := []metrics.Source{
		{Name: "totalLeases", Get: constant(5)},
		{Name: "broken", Unit: "x", Get: func(context.Context) (float64, error) {
			badCalls.Add(1)
			return 0, errors.New("db down")
		}},
		{Name: "DBQueryDurationMax", Unit: "seconds", Get: constant(0.25)},
	}
	r := lifecycle.MetricsEmitterWithClock(logger, sender, time.Hour, clock.Now, sources...)
	clock.Add(90*time.Second + 700*time.Millisecond)
	p := startProcess(t, r)
	defer stopProcess(t, p)

	reg := sender.Registry()
	eventually.True(t, "first round", 5*time.Second, func() bool {
		_, ok := reg.Value("DBQueryDurationMax")
		return ok
	})
	values, _ := reg.Snapshot()
	want := []metrics.Value{
		{Name: "DBQueryDurationMax", Value: 0.25, Unit: "seconds"},
		{Name: "totalLeases", Value: 5},
		{Name: "uptime", Value: 90, Unit: "seconds"}, // whole seconds, as upstream
	}
	if diff := cmp.Diff(want, values); diff != "" {
		t.Errorf("values (-want +got):\n%s", diff)
	}
	logs := sink.find("test.metric-getter")
	if len(logs) != 1 || logs[0].LogLevel != lager.ERROR || logs[0].Data["source"] != "broken" || logs[0].Data["error"] != "db down" {
		t.Errorf("metric-getter logs = %+v", logs)
	}
}

func TestMetricsEmitterRepeats(t *testing.T) {
	logger, _ := newTestLogger()
	sender, _ := metrics.NewSender(logger, "o", 0)
	var calls atomic.Int32
	src := metrics.Source{Name: "n", Get: func(context.Context) (float64, error) {
		return float64(calls.Add(1)), nil
	}}
	p := startProcess(t, lifecycle.MetricsEmitter(logger, sender, 5*time.Millisecond, src))
	eventually.True(t, "three rounds", 5*time.Second, func() bool {
		v, _ := sender.Registry().Value("n")
		return v.Value >= 3
	})
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
}

func TestMetricsEmitterStopsDuringSlowSource(t *testing.T) {
	logger, sink := newTestLogger()
	sender, _ := metrics.NewSender(logger, "o", 0)
	entered := make(chan struct{})
	src := metrics.Source{Name: "slow", Get: func(ctx context.Context) (float64, error) {
		close(entered)
		<-ctx.Done()
		return 0, ctx.Err()
	}}
	p := startProcess(t, lifecycle.MetricsEmitter(logger, sender, time.Hour, src))
	<-entered
	if err := stopProcess(t, p); err != nil {
		t.Errorf("exit = %v", err)
	}
	if logs := sink.find("test.metric-getter"); len(logs) != 0 {
		t.Errorf("cancelled Get logged as a failure: %+v", logs)
	}
}

func TestMetricsEmitterSourceDeadline(t *testing.T) {
	logger, sink := newTestLogger()
	sender, _ := metrics.NewSender(logger, "o", 0)
	src := metrics.Source{Name: "hung", Get: func(ctx context.Context) (float64, error) {
		<-ctx.Done()
		return 0, ctx.Err()
	}}
	p := startProcess(t, lifecycle.MetricsEmitter(logger, sender, 20*time.Millisecond, src))
	defer stopProcess(t, p)
	eventually.True(t, "deadline failure logged", 5*time.Second, func() bool { return len(sink.find("test.metric-getter")) > 0 })
	if l := sink.find("test.metric-getter")[0]; l.Data["error"] != context.DeadlineExceeded.Error() {
		t.Errorf("log = %+v", l)
	}
}

func TestMetricsEmitterInvalidConfig(t *testing.T) {
	logger, _ := newTestLogger()
	sender, _ := metrics.NewSender(logger, "o", 0)
	for name, r := range map[string]ifrit.Runner{
		"zero interval": lifecycle.MetricsEmitter(logger, sender, 0),
		"nil getter":    lifecycle.MetricsEmitter(logger, sender, time.Second, metrics.Source{Name: "x"}),
	} {
		if err := waitExit(t, ifrit.Background(r)); err == nil {
			t.Errorf("%s: want error", name)
		}
	}
}
