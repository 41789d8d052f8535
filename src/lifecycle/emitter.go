package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/metrics"
)

// MetricsEmitter returns a runner that, at once and then every interval,
// sends "uptime" (whole seconds since MetricsEmitter was called, unit
// "seconds", as upstream) followed by each source's current value. A source
// that fails is logged as "metric-getter" and skipped for that round; each
// round's Gets share a deadline of one interval so a hung source cannot stall
// the emitter.
func MetricsEmitter(logger lager.Logger, sender *metrics.Sender, interval time.Duration, sources ...metrics.Source) ifrit.Runner {
	return newMetricsEmitter(logger, sender, interval, time.Now, sources...)
}

func newMetricsEmitter(logger lager.Logger, sender *metrics.Sender, interval time.Duration, now func() time.Time, sources ...metrics.Source) *metricsEmitter {
	return &metricsEmitter{logger: logger, sender: sender, interval: interval, now: now, start: now(), sources: sources}
}

type metricsEmitter struct {
	logger   lager.Logger
	sender   *metrics.Sender
	interval time.Duration
	now      func() time.Time
	start    time.Time
	sources  []metrics.Source
}

func (m *metricsEmitter) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if m.interval <= 0 {
		return fmt.Errorf("metrics emitter: interval must be positive, got %s", m.interval)
	}
	for _, s := range m.sources {
		if s.Get == nil {
			return fmt.Errorf("metrics emitter: source %q has no Get", s.Name)
		}
	}
	ctx, cancel := cancelOnSignal(signals)
	defer cancel()
	// Ready first: a slow source (a database at startup) must not hold up
	// the members started after the emitter.
	close(ready)

	ticker := time.NewTicker(m.interval)
	defer ticker.Stop()
	for {
		m.emit(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

func (m *metricsEmitter) emit(ctx context.Context) {
	uptime := m.now().Sub(m.start) / time.Second
	m.sender.SendValue("uptime", float64(uptime), "seconds")

	ctx, cancel := context.WithTimeout(ctx, m.interval)
	defer cancel()
	for _, s := range m.sources {
		v, err := s.Get(ctx)
		if err != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return // stopping, not a source failure
			}
			m.logger.Error("metric-getter", err, lager.Data{"source": s.Name})
			continue
		}
		m.sender.SendValue(s.Name, v, s.Unit)
	}
}
