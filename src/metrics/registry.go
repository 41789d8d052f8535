// Package metrics owns how netman daemons report metrics: a Sender that emits
// upstream-compatible dropsonde (loggregator v1) envelopes over UDP to the
// local metron agent, a Registry holding the latest value of every metric so
// the same numbers can be scraped as Prometheus text from the debug server,
// and Source, a metric polled periodically by the daemon's metrics emitter.
package metrics

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ContentType is the Prometheus text exposition format, version 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// Value is the latest reading of a value metric (a dropsonde ValueMetric).
type Value struct {
	Name  string
	Value float64
	Unit  string
}

// Counter is the running total of a counter (a dropsonde CounterEvent).
type Counter struct {
	Name  string
	Total uint64
}

// Registry is a concurrency-safe store of the latest value of each value
// metric and the running total of each counter. The zero value is ready to use.
type Registry struct {
	mu       sync.RWMutex
	values   map[string]Value
	counters map[string]uint64
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// SetValue records the latest value of a value metric.
func (r *Registry) SetValue(name string, value float64, unit string) {
	r.mu.Lock()
	if r.values == nil {
		r.values = make(map[string]Value)
	}
	r.values[name] = Value{Name: name, Value: value, Unit: unit}
	r.mu.Unlock()
}

// AddCounter adds delta to a counter and returns its new total.
func (r *Registry) AddCounter(name string, delta uint64) uint64 {
	r.mu.Lock()
	if r.counters == nil {
		r.counters = make(map[string]uint64)
	}
	total := r.counters[name] + delta
	r.counters[name] = total
	r.mu.Unlock()
	return total
}

// Value returns the latest value recorded for name.
func (r *Registry) Value(name string) (Value, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.values[name]
	return v, ok
}

// Counter returns the running total of the counter name.
func (r *Registry) Counter(name string) (uint64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	total, ok := r.counters[name]
	return total, ok
}

// Snapshot returns copies of all value metrics and counters, each sorted by name.
func (r *Registry) Snapshot() ([]Value, []Counter) {
	r.mu.RLock()
	values := make([]Value, 0, len(r.values))
	for _, v := range r.values {
		values = append(values, v)
	}
	counters := make([]Counter, 0, len(r.counters))
	for name, total := range r.counters {
		counters = append(counters, Counter{Name: name, Total: total})
	}
	r.mu.RUnlock()

	sort.Slice(values, func(i, j int) bool { return values[i].Name < values[j].Name })
	sort.Slice(counters, func(i, j int) bool { return counters[i].Name < counters[j].Name })
	return values, counters
}

type family struct {
	name  string // sanitized
	orig  string
	kind  string // "counter" or "gauge"
	help  string
	value string
}

// WritePrometheus writes every metric in the Prometheus text exposition
// format: value metrics as gauges, counters as counters, sorted by name. Names
// are sanitized to [a-zA-Z_:][a-zA-Z0-9_:]*; if two metrics sanitize to the
// same name only the first in sorted order is written, because a duplicate
// family would make the whole scrape invalid.
func (r *Registry) WritePrometheus(w io.Writer) error {
	values, counters := r.Snapshot()

	fams := make([]family, 0, len(values)+len(counters))
	for _, c := range counters {
		fams = append(fams, family{
			name:  sanitizeName(c.Name),
			orig:  c.Name,
			kind:  "counter",
			help:  c.Name,
			value: strconv.FormatUint(c.Total, 10),
		})
	}
	for _, v := range values {
		help := v.Name
		if v.Unit != "" {
			help += " (" + v.Unit + ")"
		}
		fams = append(fams, family{
			name:  sanitizeName(v.Name),
			orig:  v.Name,
			kind:  "gauge",
			help:  help,
			value: formatFloat(v.Value),
		})
	}
	sort.Slice(fams, func(i, j int) bool {
		a, b := fams[i], fams[j]
		if a.name != b.name {
			return a.name < b.name
		}
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		return a.orig < b.orig
	})

	var buf bytes.Buffer
	last := ""
	for _, f := range fams {
		if f.name == "" || f.name == last {
			continue
		}
		last = f.name
		buf.WriteString("# HELP ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(escapeHelp(f.help))
		buf.WriteString("\n# TYPE ")
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(f.kind)
		buf.WriteByte('\n')
		buf.WriteString(f.name)
		buf.WriteByte(' ')
		buf.WriteString(f.value)
		buf.WriteByte('\n')
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// Handler serves the registry in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && req.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		// A write error means the scraper went away; nothing useful to do.
		_ = r.WritePrometheus(w)
	})
}

// sanitizeName maps a dropsonde metric name onto the Prometheus name
// alphabet. An empty name stays empty and is skipped by the writer.
func sanitizeName(name string) string {
	if name == "" {
		return ""
	}
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
			b.WriteByte(c)
		case c >= '0' && c <= '9':
			if i == 0 {
				b.WriteByte('_')
			}
			b.WriteByte(c)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

func formatFloat(v float64) string {
	// 'g' with -1 precision is the shortest exact form and renders the
	// specials as "+Inf", "-Inf" and "NaN", as the format requires.
	return strconv.FormatFloat(v, 'g', -1, 64)
}

var helpEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`)

func escapeHelp(s string) string { return helpEscaper.Replace(s) }
