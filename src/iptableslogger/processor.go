package iptableslogger

import (
	"context"
	"io"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metrics"
)

// Counters the logger sends (dropsonde CounterEvents, origin
// iptables-logger), in addition to upstream's uptime.
const (
	// MetricUnparseableLines counts OK_/DENY_ lines that carried no packet
	// (no valid SRC= and DST=); they are skipped.
	MetricUnparseableLines = "iptablesLoggerUnparseableLines"
	// MetricLostLines counts kernel log messages the logger could not read:
	// /dev/kmsg records overwritten in the ring buffer before they were
	// read, malformed records, and lines longer than 64 KiB.
	MetricLostLines = "iptablesLoggerLostKernelLogLines"
)

// flushAt bounds the output buffered between two flushes.
const flushAt = 64 << 10

// errorLogInterval bounds how often a repeated failure (metadata store,
// output file) is logged.
const errorLogInterval = time.Minute

// Processor turns kernel log lines into output events: it parses OK_ and
// DENY_ lines, matches the container address to its app, and writes one
// lager JSON line per packet. Output is buffered and written in one write
// per Flush, i.e. whenever the reader has caught up with the kernel log.
// Not safe for concurrent use: one tailer drives it.
type Processor struct {
	logger     lager.Logger
	containers *Containers
	out        io.Writer
	format     TimestampFormat
	now        func() time.Time
	sender     *metrics.Sender
	flows      *FlowLog // nil: no flow records

	buf         []byte
	refreshed   bool // the store was checked during this batch
	unparseable uint64
	lost        uint64

	lastStoreErr time.Time
	lastWriteErr time.Time
}

// NewProcessor returns a processor writing to out. now is time.Now when nil;
// sender may be nil.
func NewProcessor(logger lager.Logger, containers *Containers, out io.Writer, format TimestampFormat, now func() time.Time, sender *metrics.Sender) *Processor {
	if now == nil {
		now = time.Now
	}
	return &Processor{
		logger:     logger,
		containers: containers,
		out:        out,
		format:     format,
		now:        now,
		sender:     sender,
		buf:        make([]byte, 0, flushAt+4096),
	}
}

// Line handles one kernel log message.
func (p *Processor) Line(ctx context.Context, line []byte) {
	if !Relevant(line) {
		return
	}
	pkt, err := Parse(string(line))
	if err != nil {
		p.unparseable++
		p.logger.Debug("unparseable-line", lager.Data{"line": string(line), "reason": err.Error()})
		return
	}
	if !p.refreshed {
		// Once per batch: the store is at least as new as the lines, which
		// were logged before they were read.
		p.refreshed = true
		if err := p.containers.Refresh(ctx); err != nil && p.now().Sub(p.lastStoreErr) >= errorLogInterval {
			// Go on with the last good index rather than drop the event.
			p.lastStoreErr = p.now()
			p.logger.Error("read-container-metadata", err)
		}
	}
	ip := pkt.SrcIP
	if pkt.Direction == Ingress {
		ip = pkt.DstIP
	}
	p.buf = AppendEvent(p.buf, p.now(), p.format, pkt, p.containers.Lookup(ip))
	if p.flows != nil && !pkt.Allowed {
		// A dropped packet never becomes a conntrack entry (conntrack
		// confirms entries only for packets that pass), so this line is
		// the only trace of the denied flow.
		p.buf = p.flows.Append(p.buf, p.containers, FlowFromDenied(pkt, string(line)))
	}
	if len(p.buf) >= flushAt {
		p.write()
	}
}

// Lost counts messages the reader could not read.
func (p *Processor) Lost(n uint64) { p.lost += n }

// Flush writes the buffered events and sends the counters' increments.
func (p *Processor) Flush() {
	p.write()
	p.refreshed = false
	if p.unparseable > 0 {
		p.sender.AddCounter(MetricUnparseableLines, p.unparseable)
		p.unparseable = 0
	}
	if p.lost > 0 {
		p.sender.AddCounter(MetricLostLines, p.lost)
		p.lost = 0
	}
	if p.flows != nil {
		p.flows.Flush(p.sender)
	}
}

// WithFlows makes the processor write a flow record (verdict denied) after
// the event of every DENY_ packet.
func (p *Processor) WithFlows(f *FlowLog) *Processor {
	p.flows = f
	return p
}

func (p *Processor) write() {
	if len(p.buf) == 0 {
		return
	}
	if _, err := p.out.Write(p.buf); err != nil && p.now().Sub(p.lastWriteErr) >= errorLogInterval {
		p.lastWriteErr = p.now()
		p.logger.Error("write-output-log-file", err)
	}
	p.buf = p.buf[:0]
}
