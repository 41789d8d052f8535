package iptableslogger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Kmsg is one /dev/kmsg record.
type Kmsg struct {
	Seq uint64
	// Kernel is true for messages the kernel itself wrote (facility 0):
	// userspace writes to /dev/kmsg always get another facility, so they
	// cannot pass for a LOG rule's line.
	Kernel bool
	// Message is the text, without the record's dictionary lines.
	Message []byte
}

// ParseKmsg splits one /dev/kmsg record,
// "<prio>,<seq>,<usec>,<flags>[,…];<message>\n[ KEY=value\n…]".
// ok is false for a record not in that format.
func ParseKmsg(rec []byte) (k Kmsg, ok bool) {
	semi := bytes.IndexByte(rec, ';')
	if semi < 0 {
		return Kmsg{}, false
	}
	header := rec[:semi]
	prio, header, ok := headerNumber(header)
	if !ok {
		return Kmsg{}, false
	}
	seq, _, ok := headerNumber(header)
	if !ok {
		return Kmsg{}, false
	}
	msg := rec[semi+1:]
	// The message ends at the first newline; continuation lines (starting
	// with a space) carry the record's dictionary.
	if nl := bytes.IndexByte(msg, '\n'); nl >= 0 {
		msg = msg[:nl]
	}
	return Kmsg{Seq: seq, Kernel: prio>>3 == 0, Message: msg}, true
}

// headerNumber reads the decimal field at the start of a record header and
// returns the rest after its comma.
func headerNumber(h []byte) (n uint64, rest []byte, ok bool) {
	end := bytes.IndexByte(h, ',')
	if end <= 0 || end > 19 {
		return 0, nil, false
	}
	for _, c := range h[:end] {
		if c < '0' || c > '9' {
			return 0, nil, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, h[end+1:], true
}

// kmsgRecordMax is larger than the longest record the kernel hands out
// (PRINTKRB_RECORD_MAX plus the header); a shorter buffer makes read fail
// with EINVAL.
const kmsgRecordMax = 16 << 10

// kmsgTailer reads /dev/kmsg: one record per read, from the end of the ring
// buffer when opened. Reads are non-blocking through the runtime's poller,
// so the handler is flushed exactly when the reader has caught up, and a
// cancelled context interrupts the wait.
type kmsgTailer struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
	// next is the sequence number expected next; 0 before the first record.
	next    uint64
	overrun bool
	// read is unix.Read; tests replace it to inject errors.
	read func(fd int, p []byte) (int, error)
}

func openKmsg(path string) (*kmsgTailer, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	// SEEK_END on /dev/kmsg moves to the record after the newest one: only
	// messages logged from now on are read.
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek to end of %s: %w", path, err)
	}
	return newKmsgTailer(f)
}

func newKmsgTailer(f *os.File) (*kmsgTailer, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	// The wait for records must be interruptible: the file has to be in the
	// runtime poller, which Go arranges for pollable character devices.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s cannot be polled: %w", f.Name(), err)
	}
	return &kmsgTailer{f: f, rc: rc, buf: make([]byte, kmsgRecordMax), read: unix.Read}, nil
}

func (t *kmsgTailer) Kind() string { return "kmsg" }

func (t *kmsgTailer) Close() error { return t.f.Close() }

func (t *kmsgTailer) Run(ctx context.Context, h Handler) error {
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		// A deadline in the past wakes the wait below.
		_ = t.f.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			// Clear the deadline for a later Run, once it has been set.
			<-fired
			_ = t.f.SetReadDeadline(time.Time{})
		}
	}()
	var readErr error
	err := t.rc.Read(func(fd uintptr) bool {
		for {
			n, err := t.read(int(fd), t.buf)
			switch {
			case err == nil && n > 0:
				t.record(ctx, h, t.buf[:n])
			case errors.Is(err, unix.EAGAIN):
				h.Flush()
				return false // wait until readable
			case errors.Is(err, unix.EINTR):
			case errors.Is(err, unix.EPIPE):
				// The records after the last one read were overwritten in
				// the ring buffer; the next read returns the oldest left,
				// and its sequence number tells how many were lost.
				t.overrun = true
			case err == nil:
				readErr = io.ErrUnexpectedEOF
				return true
			default:
				readErr = err
				return true
			}
			if ctx.Err() != nil {
				h.Flush()
				return true
			}
		}
	})
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = readErr
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", t.f.Name(), err)
	}
	return nil
}

func (t *kmsgTailer) record(ctx context.Context, h Handler, rec []byte) {
	k, ok := ParseKmsg(rec)
	if !ok {
		h.Lost(1)
		return
	}
	switch {
	case t.next != 0 && k.Seq > t.next:
		h.Lost(k.Seq - t.next)
	case t.overrun:
		h.Lost(1) // at least one, however many
	}
	t.overrun = false
	t.next = k.Seq + 1
	if k.Kernel {
		h.Line(ctx, k.Message)
	}
}
