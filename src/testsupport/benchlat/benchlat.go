// Package benchlat collects per-request latencies in benchmarks and
// reports their percentiles as custom metrics (p50-ms, p99-ms, p999-ms),
// the form docs/benchmarks.md quotes.
package benchlat

import (
	"slices"
	"sync"
	"testing"
	"time"
)

// Latencies is safe for concurrent Add.
type Latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

// Add records one request's latency.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// Report reports p50, p99 and p99.9 in milliseconds.
func (l *Latencies) Report(b *testing.B) {
	l.mu.Lock()
	defer l.mu.Unlock()
	Report(b, "", l.d)
}

// Report reports the percentiles of d, each metric prefixed by name and a
// dash when name is not empty.
func Report(b *testing.B, name string, d []time.Duration) {
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	if name != "" {
		name += "-"
	}
	at := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(at(0.50), name+"p50-ms")
	b.ReportMetric(at(0.99), name+"p99-ms")
	b.ReportMetric(at(0.999), name+"p999-ms")
}
