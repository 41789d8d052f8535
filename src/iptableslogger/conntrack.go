package iptableslogger

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/metrics"
)

// Namespace is a network namespace other than the process's own to read
// conntrack events in (tests; src/namespace.NS is one).
type Namespace interface {
	// Do runs fn on a thread inside the namespace.
	Do(fn func() error) error
	// Handle opens the namespace; the caller closes it.
	Handle() (netns.NsHandle, error)
}

// The conntrack sysctls flow logs need, per network namespace: byte and
// packet counters on every connection (so its DESTROY event carries them),
// and start and stop times (so it carries its duration).
const (
	sysctlAcct      = "/proc/sys/net/netfilter/nf_conntrack_acct"
	sysctlTimestamp = "/proc/sys/net/netfilter/nf_conntrack_timestamp"
)

// maxStarts bounds the NEW times kept when conntrack timestamps are off
// (one per open connection of a local container).
const maxStarts = 1 << 18

// readBuffer is the socket buffer asked for conntrack events; the kernel
// caps it at net.core.rmem_max.
const readBuffer = 4 << 20

// ConntrackReader follows conntrack's events in one network namespace — the
// one where container traffic is tracked: the host's on a cell — and writes
// a flow record (verdict allowed) for every connection of a container of
// this cell when conntrack destroys it. Not safe for concurrent use: Run
// drives it.
type ConntrackReader struct {
	logger     lager.Logger
	flows      *FlowLog
	containers *Containers
	out        io.Writer
	sender     *metrics.Sender
	ns         Namespace // nil: the process's own
	now        func() time.Time

	// starts are NEW event times by conntrack id, kept only while
	// conntrack timestamps are off.
	starts    map[uint32]time.Time
	useStarts bool
	refreshed bool
	buf       []byte

	lastStoreErr, lastWriteErr time.Time
}

// NewConntrackReader returns a reader for the namespace ns (nil: the
// process's own) writing records to out. now is time.Now when nil.
func NewConntrackReader(logger lager.Logger, flows *FlowLog, containers *Containers, out io.Writer, sender *metrics.Sender, ns Namespace, now func() time.Time) *ConntrackReader {
	if now == nil {
		now = time.Now
	}
	return &ConntrackReader{
		logger: logger, flows: flows, containers: containers, out: out, sender: sender, ns: ns, now: now,
		starts: map[uint32]time.Time{}, buf: make([]byte, 0, flushAt+4096),
	}
}

// Run turns on conntrack accounting and timestamps in the namespace, then
// reads events until ctx is done. When the kernel reports that events were
// dropped (the socket buffer overran) it counts it and listens again at
// once; any other failure is returned.
func (r *ConntrackReader) Run(ctx context.Context) error {
	timestamps, err := r.enableAccounting()
	if err != nil {
		return err
	}
	r.useStarts = !timestamps
	for {
		err := r.listen(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, unix.ENOBUFS) {
			return err
		}
		r.flows.Lost()
		// Starts of flows whose DESTROY was lost would stay for ever.
		clear(r.starts)
	}
}

// enableAccounting sets nf_conntrack_acct (required: without it records
// would carry no bytes) and nf_conntrack_timestamp (optional: without it
// durations are measured from the NEW event) in the namespace.
func (r *ConntrackReader) enableAccounting() (timestamps bool, err error) {
	set := func() error {
		if err := os.WriteFile(sysctlAcct, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enable conntrack accounting: %w", err)
		}
		if err := os.WriteFile(sysctlTimestamp, []byte("1"), 0o644); err != nil {
			r.logger.Error("enable-conntrack-timestamps", err)
			return nil
		}
		timestamps = true
		return nil
	}
	if r.ns == nil {
		return timestamps, set()
	}
	return timestamps, r.ns.Do(set)
}

func (r *ConntrackReader) dial() (*conntrack.Conn, error) {
	cfg := &netlink.Config{}
	if r.ns != nil {
		h, err := r.ns.Handle()
		if err != nil {
			return nil, err
		}
		defer h.Close()
		cfg.NetNS = int(h)
	}
	conn, err := conntrack.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("dial conntrack: %w", err)
	}
	return conn, nil
}

func (r *ConntrackReader) listen(ctx context.Context) error {
	conn, err := r.dial()
	if err != nil {
		return err
	}
	if err := conn.SetReadBuffer(readBuffer); err != nil {
		r.logger.Debug("set-read-buffer", lager.Data{"error": err.Error()})
	}
	groups := []netfilter.NetlinkGroup{netfilter.GroupCTDestroy}
	if r.useStarts {
		groups = append(groups, netfilter.GroupCTNew)
	}
	events := make(chan conntrack.Event, 1024)
	errs, err := conn.Listen(events, 1, groups)
	if err != nil {
		conn.Close()
		return fmt.Errorf("listen for conntrack events: %w", err)
	}
	defer closeDraining(conn, events, errs)
	// Connections opened from now on are reported (with the kernel's
	// default nf_conntrack_events=2, only those opened while a listener
	// exists carry events at all).
	r.logger.Info("listening", lager.Data{"conntrack_timestamps": !r.useStarts})
	for {
		select {
		case <-ctx.Done():
			r.flush()
			return nil
		case err := <-errs:
			r.flush()
			return err
		case ev := <-events:
			r.handle(ctx, ev)
			// Take what else is ready, then write it in one go.
			for more := true; more; {
				select {
				case ev := <-events:
					r.handle(ctx, ev)
				default:
					more = false
				}
			}
			r.flush()
		}
	}
}

// closeDraining closes conn, whose worker may be blocked handing over an
// event or an error, by taking them until it has stopped.
func closeDraining(conn *conntrack.Conn, events <-chan conntrack.Event, errs <-chan error) {
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-events:
			case <-errs:
			case <-done:
				return
			}
		}
	}()
	conn.Close()
	close(done)
}

// handle takes one event: a NEW notes the start (only without conntrack
// timestamps), a DESTROY becomes a record.
func (r *ConntrackReader) handle(ctx context.Context, ev conntrack.Event) {
	if ev.Flow == nil {
		return
	}
	switch ev.Type {
	case conntrack.EventNew:
		if !r.useStarts {
			return
		}
		r.refresh(ctx)
		o := ev.Flow.TupleOrig.IP
		if _, ok := r.containers.Local(addrString(o.SourceAddress)); !ok {
			if _, ok := r.containers.Local(addrString(o.DestinationAddress)); !ok {
				return
			}
		}
		if len(r.starts) >= maxStarts {
			clear(r.starts)
		}
		r.starts[ev.Flow.ID] = r.now()
	case conntrack.EventDestroy:
		r.refresh(ctx)
		start := r.starts[ev.Flow.ID]
		delete(r.starts, ev.Flow.ID)
		r.buf = r.flows.Append(r.buf, r.containers, FlowFromConntrack(ev.Flow, start, r.now()))
		if len(r.buf) >= flushAt {
			r.write()
		}
	}
}

// refresh checks the store once per batch of events.
func (r *ConntrackReader) refresh(ctx context.Context) {
	if r.refreshed {
		return
	}
	r.refreshed = true
	if err := r.containers.Refresh(ctx); err != nil && r.now().Sub(r.lastStoreErr) >= errorLogInterval {
		r.lastStoreErr = r.now()
		r.logger.Error("read-container-metadata", err)
	}
}

func (r *ConntrackReader) flush() {
	r.write()
	r.refreshed = false
	r.flows.Flush(r.sender)
}

func (r *ConntrackReader) write() {
	if len(r.buf) == 0 {
		return
	}
	if _, err := r.out.Write(r.buf); err != nil && r.now().Sub(r.lastWriteErr) >= errorLogInterval {
		r.lastWriteErr = r.now()
		r.logger.Error("write-output-log-file", err)
	}
	r.buf = r.buf[:0]
}
