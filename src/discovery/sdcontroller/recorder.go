package sdcontroller

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/netman-release/netman/src/metrics"
)

// Recorder accumulates the controller's per-interval metrics between two
// rounds of the metrics emitter.
type Recorder struct {
	now func() time.Time

	mu         sync.Mutex
	maxTransit time.Duration

	registers   atomic.Uint64
	dnsRequests atomic.Uint64
}

// NewRecorder returns an empty recorder reading time from now (time.Now when nil).
func NewRecorder(now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now}
}

// RecordTransit records how long a register message took from the
// endpoint's update (endpoint_updated_at_ns) to the controller; zero means
// the emitter did not say and is ignored.
func (r *Recorder) RecordTransit(updatedAtNs int64) {
	if updatedAtNs == 0 {
		return
	}
	d := r.now().Sub(time.Unix(0, updatedAtNs))
	r.mu.Lock()
	r.maxTransit = max(r.maxTransit, d)
	r.mu.Unlock()
}

// RecordRegister counts one well-formed register message.
func (r *Recorder) RecordRegister() { r.registers.Add(1) }

// RecordDNSRequest counts one answered registration lookup.
func (r *Recorder) RecordDNSRequest() { r.dnsRequests.Add(1) }

// Sources are the emitter's sources, in upstream's order and units:
// dnsRequest (lookups since the last round), maxRouteMessageTimePerInterval
// (ms, the slowest register message since the last round) and
// registerMessagesReceived (cumulative; upstream labels it "ms").
func (r *Recorder) Sources() []metrics.Source {
	return []metrics.Source{
		{Name: "dnsRequest", Unit: "request", Get: func(context.Context) (float64, error) {
			return float64(r.dnsRequests.Swap(0)), nil
		}},
		{Name: "maxRouteMessageTimePerInterval", Unit: "ms", Get: func(context.Context) (float64, error) {
			r.mu.Lock()
			d := r.maxTransit
			r.maxTransit = 0
			r.mu.Unlock()
			return float64(d) / float64(time.Millisecond), nil
		}},
		{Name: "registerMessagesReceived", Unit: "ms", Get: func(context.Context) (float64, error) {
			return float64(r.registers.Load()), nil
		}},
	}
}
