package sqldb

import (
	"sync"
	"sync/atomic"
	"time"
)

// Probe watches every DB opened afterwards for one database name: it
// counts their queries and can make each one slower. netman-fleet uses it
// to report database load per 1,000 cells and to simulate a slow
// database under the real servers.
type Probe struct {
	latency atomic.Int64
	queries atomic.Uint64
}

var probes sync.Map // database name → *Probe

// ProbeDatabase returns the probe of the named database (a sqlite file
// path, or a server's database name), making it on first use. Only DBs
// opened after the first call are watched.
func ProbeDatabase(name string) *Probe {
	p, _ := probes.LoadOrStore(name, &Probe{})
	return p.(*Probe)
}

// InjectLatency delays every later query and statement by d (0: none).
func (p *Probe) InjectLatency(d time.Duration) { p.latency.Store(int64(d)) }

// Queries is how many queries and statements the watched DBs have run.
func (p *Probe) Queries() uint64 { return p.queries.Load() }

func probeFor(name string) *Probe {
	if p, ok := probes.Load(name); ok {
		return p.(*Probe)
	}
	return nil
}

// observe counts one query and sleeps the injected latency.
func (p *Probe) observe() {
	if p == nil {
		return
	}
	p.queries.Add(1)
	if d := p.latency.Load(); d > 0 {
		time.Sleep(time.Duration(d))
	}
}
