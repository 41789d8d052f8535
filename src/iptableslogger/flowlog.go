package iptableslogger

import (
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metrics"
)

// Flow log counters (dropsonde CounterEvents, origin iptables-logger), sent
// only with enable_flow_logs.
const (
	// MetricFlowsAllowed counts connections conntrack ended that had a
	// container of this cell at one end, whether or not their record was
	// written.
	MetricFlowsAllowed = "iptablesLoggerFlowsAllowed"
	// MetricFlowsDenied counts DENY_ packets turned into flow records,
	// whether or not the record was written.
	MetricFlowsDenied = "iptablesLoggerFlowsDenied"
	// MetricFlowRecordsDropped counts flow records the rate limit dropped.
	MetricFlowRecordsDropped = "iptablesLoggerFlowRecordsDropped"
	// MetricFlowEventsLost counts the times the kernel dropped conntrack
	// events because the logger did not read them fast enough (ENOBUFS);
	// each time, an unknown number of flows went unrecorded.
	MetricFlowEventsLost = "iptablesLoggerFlowEventsLost"
)

// dropLogInterval bounds how often the count of rate-limited flow records
// is logged.
const dropLogInterval = 10 * time.Second

// TokenBucket is a rate limit: it holds up to burst tokens, gains rate a
// second, and every allowed record takes one. Safe for concurrent use.
type TokenBucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
}

// NewTokenBucket returns a full bucket. rate <= 0 allows nothing; burst < 1
// is 1.
func NewTokenBucket(rate float64, burst int) *TokenBucket {
	b := float64(burst)
	if b < 1 {
		b = 1
	}
	return &TokenBucket{rate: rate, burst: b, tokens: b}
}

// Allow takes a token at now if there is one.
func (b *TokenBucket) Allow(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens += now.Sub(b.last).Seconds() * b.rate
		if b.tokens > b.burst {
			b.tokens = b.burst
		}
	}
	if b.last.IsZero() || now.After(b.last) {
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// FlowLog is what the two producers of flow records share: the conntrack
// reader (allowed flows) and the kernel log processor (denied packets). It
// joins a flow's addresses with the containers of this cell, applies the
// rate limit and counts. Records go into the caller's buffer, so each
// producer writes whole lines in its own batches. Safe for concurrent use;
// each producer passes its own Containers.
type FlowLog struct {
	logger  lager.Logger
	format  TimestampFormat
	limiter *TokenBucket
	now     func() time.Time

	allowed, denied, dropped, lost atomic.Uint64

	mu          sync.Mutex
	unlogged    uint64 // dropped since the last drop log
	lastDropLog time.Time
}

// NewFlowLog returns a flow log writing at most perSec records a second
// (bursts of burst). now is time.Now when nil.
func NewFlowLog(logger lager.Logger, format TimestampFormat, perSec, burst int, now func() time.Time) *FlowLog {
	if now == nil {
		now = time.Now
	}
	return &FlowLog{logger: logger, format: format, limiter: NewTokenBucket(float64(perSec), burst), now: now}
}

// Append joins f with the containers and appends its record to dst, unless
// neither end is a container of this cell (the host's own traffic: no
// record, not counted) or the rate limit drops it (counted). It returns
// dst, grown or not.
func (l *FlowLog) Append(dst []byte, c *Containers, f Flow) []byte {
	src, srcLocal := c.Local(f.SrcIP)
	dest, destLocal := c.Local(f.DstIP)
	if !srcLocal && !destLocal {
		return dst
	}
	if f.Verdict == VerdictDenied {
		l.denied.Add(1)
	} else {
		l.allowed.Add(1)
	}
	now := l.now()
	if !l.limiter.Allow(now) {
		l.dropped.Add(1)
		l.mu.Lock()
		l.unlogged++
		l.mu.Unlock()
		return dst
	}
	return AppendFlow(dst, now, l.format, f, src, dest)
}

// Lost counts a conntrack event overrun.
func (l *FlowLog) Lost() { l.lost.Add(1) }

// Flush sends the counters' increments and logs how many records the rate
// limit dropped, at most every 10 s.
func (l *FlowLog) Flush(sender *metrics.Sender) {
	for _, c := range []struct {
		name string
		v    *atomic.Uint64
	}{
		{MetricFlowsAllowed, &l.allowed}, {MetricFlowsDenied, &l.denied},
		{MetricFlowRecordsDropped, &l.dropped}, {MetricFlowEventsLost, &l.lost},
	} {
		if n := c.v.Swap(0); n > 0 {
			sender.AddCounter(c.name, n)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if l.unlogged > 0 && now.Sub(l.lastDropLog) >= dropLogInterval {
		l.logger.Info("flow-records-dropped", lager.Data{"dropped": l.unlogged, "flow_logs_per_sec": l.limiter.rate})
		l.unlogged, l.lastDropLog = 0, now
	}
}
