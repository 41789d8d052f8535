// Package addresstable owns service-discovery-controller's in-memory map of
// internal route host names to instance IPs: case-insensitive fully qualified
// names, refresh-on-register, staleness pruning that pauses while the
// controller is cut off from NATS, and the warm-up flag.
package addresstable

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

// Table maps host names to the IPs registered for them. It is safe for
// concurrent use: lookups share a read lock and never copy, registrations
// take the write lock briefly.
type Table struct {
	logger      lager.Logger
	staleness   time.Duration
	resumeDelay time.Duration
	now         func() time.Time

	mu         sync.RWMutex
	names      map[string]*entries
	paused     bool
	lastResume time.Time

	warm atomic.Bool
}

// entries are one name's registrations in insertion order. ips is
// copy-on-write — replaced, never changed in place — so Lookup can hand it
// out without copying; seen (parallel to ips) is only touched under the write
// lock.
type entries struct {
	ips  []string
	seen []time.Time
}

// Option adjusts a Table.
type Option func(*Table)

// WithClock makes the table read time from now instead of time.Now (tests).
func WithClock(now func() time.Time) Option { return func(t *Table) { t.now = now } }

// New returns an empty, cold table. An entry is stale once it has not been
// registered for longer than staleness; after ResumePruning, pruning waits
// resumeDelay so that every route emitter has had one interval to re-register.
func New(logger lager.Logger, staleness, resumeDelay time.Duration, opts ...Option) *Table {
	t := &Table{
		logger:      logger,
		staleness:   staleness,
		resumeDelay: resumeDelay,
		now:         time.Now,
		names:       map[string]*entries{},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// Normalize is the key a host name is stored under: lower case with a
// trailing dot, as upstream.
func Normalize(hostname string) string {
	hostname = strings.ToLower(hostname)
	if !strings.HasSuffix(hostname, ".") {
		hostname += "."
	}
	return hostname
}

// Add registers ip under every name, or refreshes the registration when ip
// is already there. An IP never appears twice under one name.
func (t *Table) Add(hostnames []string, ip string) {
	now := t.now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range hostnames {
		key := Normalize(h)
		e := t.names[key]
		if e == nil {
			e = &entries{}
			t.names[key] = e
		}
		if i := slices.Index(e.ips, ip); i >= 0 {
			e.seen[i] = now
			continue
		}
		ips := make([]string, len(e.ips), len(e.ips)+1)
		copy(ips, e.ips)
		e.ips = append(ips, ip)
		e.seen = append(e.seen, now)
	}
}

// Remove drops ip from every name; a name left without IPs is forgotten.
func (t *Table) Remove(hostnames []string, ip string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, h := range hostnames {
		key := Normalize(h)
		e := t.names[key]
		if e == nil {
			continue
		}
		i := slices.Index(e.ips, ip)
		if i < 0 {
			continue
		}
		if len(e.ips) == 1 {
			delete(t.names, key)
			continue
		}
		e.ips = slices.Concat(e.ips[:i], e.ips[i+1:])
		e.seen = slices.Delete(e.seen, i, i+1)
	}
}

// Lookup returns the IPs registered under hostname in registration order,
// nil when there are none. The slice is shared: callers must not modify it.
func (t *Table) Lookup(hostname string) []string {
	key := Normalize(hostname)
	t.mu.RLock()
	defer t.mu.RUnlock()
	if e := t.names[key]; e != nil {
		return e.ips
	}
	return nil
}

// Address is one name and its IPs, as the /routes listing shows them.
type Address struct {
	Hostname string   `json:"hostname"`
	IPs      []string `json:"ips"`
}

// All returns every name with its IPs, sorted by name. A name whose entries
// were all pruned is listed with no IPs, as upstream. The IP slices are
// shared: callers must not modify them.
func (t *Table) All() []Address {
	t.mu.RLock()
	out := make([]Address, 0, len(t.names))
	for name, e := range t.names {
		ips := e.ips
		if ips == nil {
			ips = []string{}
		}
		out = append(out, Address{Hostname: name, IPs: ips})
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Address) int { return strings.Compare(a.Hostname, b.Hostname) })
	return out
}

// Len returns how many IP registrations the table holds, over all names.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, e := range t.names {
		n += len(e.ips)
	}
	return n
}

// SetWarm marks the table as having been subscribed long enough to hold
// every route: before that the API refuses lookups.
func (t *Table) SetWarm() { t.warm.Store(true) }

// IsWarm reports whether SetWarm has been called.
func (t *Table) IsWarm() bool { return t.warm.Load() }

// PausePruning stops pruning, e.g. while NATS is unreachable and route
// emitters cannot refresh their registrations.
func (t *Table) PausePruning() {
	t.logger.Info("pruning-pause")
	t.mu.Lock()
	t.paused = true
	t.mu.Unlock()
}

// ResumePruning allows pruning again once the resume delay has passed.
func (t *Table) ResumePruning() {
	t.logger.Info("pruning-resume")
	now := t.now()
	t.mu.Lock()
	t.paused = false
	t.lastResume = now
	t.mu.Unlock()
}

// PruneIfDue prunes stale entries unless pruning is paused or was resumed
// less than the resume delay ago. It reports whether it pruned.
func (t *Table) PruneIfDue() bool {
	now := t.now()
	t.mu.RLock()
	skip := t.paused || now.Sub(t.lastResume) < t.resumeDelay
	t.mu.RUnlock()
	if skip {
		return false
	}
	t.Prune()
	return true
}

// Prune drops every entry not registered within the staleness threshold.
// A name whose entries all went stale stays, with no IPs, as upstream.
func (t *Table) Prune() {
	now := t.now()
	// Find the stale names under the read lock first: in the common case
	// nothing is stale and lookups are never blocked.
	t.mu.RLock()
	var stale []string
	for name, e := range t.names {
		if slices.ContainsFunc(e.seen, func(s time.Time) bool { return now.Sub(s) > t.staleness }) {
			stale = append(stale, name)
		}
	}
	t.mu.RUnlock()
	if len(stale) == 0 {
		return
	}

	var oldTotal, newTotal int
	t.mu.Lock()
	for _, name := range stale {
		e := t.names[name]
		if e == nil {
			continue
		}
		ips := make([]string, 0, len(e.ips))
		seen := make([]time.Time, 0, len(e.seen))
		for i, ip := range e.ips {
			if now.Sub(e.seen[i]) <= t.staleness {
				ips = append(ips, ip)
				seen = append(seen, e.seen[i])
			} else {
				t.logger.Debug("pruning-address", lager.Data{"ip": ip, "hostname": name})
			}
		}
		oldTotal += len(e.ips)
		newTotal += len(ips)
		e.ips, e.seen = ips, seen
	}
	t.mu.Unlock()
	t.logger.Info("pruned", lager.Data{"old-total": oldTotal, "new-total": newTotal})
}

// PruneEvery calls PruneIfDue every interval until ctx is done.
func (t *Table) PruneEvery(ctx context.Context, interval time.Duration) error {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			t.PruneIfDue()
		}
	}
}
