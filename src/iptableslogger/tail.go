package iptableslogger

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// Handler receives the kernel log, one message at a time.
type Handler interface {
	// Line is one kernel log message without its newline. The slice is only
	// valid during the call.
	Line(ctx context.Context, line []byte)
	// Lost counts messages that could not be read: overwritten in the
	// kernel's ring buffer before the logger read them, or too long.
	Lost(n uint64)
	// Flush is called whenever the reader has caught up with the log,
	// before it waits for more.
	Flush()
}

// Tailer follows a kernel log from where it ended when it was opened.
type Tailer interface {
	// Run feeds h until ctx is done (then it returns nil) or reading fails.
	// It may be called again after a failure and goes on from where it was.
	Run(ctx context.Context, h Handler) error
	// Kind is "file" or "kmsg".
	Kind() string
	Close() error
}

// DefaultPollInterval is how often a file tailer that has caught up looks for
// new lines, rotation and truncation (hpcloud/tail's polling interval, which
// upstream uses).
const DefaultPollInterval = 250 * time.Millisecond

// maxLine bounds one line of a kernel log file; a longer line (never a LOG
// rule's, which the kernel caps at 1 KiB) is dropped and counted as lost.
const maxLine = 64 << 10

// OpenKernelLog opens kernel_log_file at its end: /dev/kmsg (or any character
// device) is read record by record; anything else is tailed as a text file,
// following rotation and truncation. A missing file is an error, as upstream.
func OpenKernelLog(path string, poll time.Duration) (Tailer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode()&os.ModeCharDevice != 0 {
		return openKmsg(path)
	}
	if poll <= 0 {
		poll = DefaultPollInterval
	}
	return openFileTailer(path, poll)
}

// fileTailer follows a text file like `tail -F`: from its end, reopening it
// when the path names a new file (rotation by rename or by remove and
// create), and starting over when it shrinks (copytruncate).
type fileTailer struct {
	path string
	poll time.Duration

	f        *os.File
	dev, ino uint64
	off      int64 // bytes read from f
	buf      []byte
	partial  []byte // an unterminated last line
	skipping bool   // discarding the rest of an overlong line
}

func openFileTailer(path string, poll time.Duration) (*fileTailer, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	t := &fileTailer{path: path, poll: poll, f: f, off: off, buf: make([]byte, 64<<10)}
	t.dev, t.ino = fileID(st)
	return t, nil
}

func (t *fileTailer) Kind() string { return "file" }

func (t *fileTailer) Close() error {
	if t.f == nil {
		return nil
	}
	err := t.f.Close()
	t.f = nil
	return err
}

func (t *fileTailer) Run(ctx context.Context, h Handler) error {
	if t.f == nil {
		return os.ErrClosed
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for {
		if err := t.drain(ctx, h); err != nil {
			return err
		}
		h.Flush()
		timer.Reset(t.poll)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		if err := t.follow(ctx, h); err != nil {
			return err
		}
	}
}

// drain reads to the end of the file.
func (t *fileTailer) drain(ctx context.Context, h Handler) error {
	for {
		n, err := t.f.Read(t.buf)
		if n > 0 {
			t.off += int64(n)
			t.split(ctx, h, t.buf[:n])
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", t.path, err)
		}
		if ctx.Err() != nil {
			return nil
		}
	}
}

// split hands every complete line in chunk to h and keeps the rest.
func (t *fileTailer) split(ctx context.Context, h Handler, chunk []byte) {
	for len(chunk) > 0 {
		nl := bytes.IndexByte(chunk, '\n')
		if nl < 0 {
			t.keep(h, chunk)
			return
		}
		line := chunk[:nl]
		chunk = chunk[nl+1:]
		switch {
		case t.skipping:
			t.skipping = false
		case len(t.partial) > 0:
			if len(t.partial)+len(line) > maxLine {
				h.Lost(1)
			} else {
				t.partial = append(t.partial, line...)
				h.Line(ctx, t.partial)
			}
			t.partial = t.partial[:0]
		default:
			h.Line(ctx, line)
		}
	}
}

func (t *fileTailer) keep(h Handler, rest []byte) {
	if t.skipping {
		return
	}
	if len(t.partial)+len(rest) > maxLine {
		h.Lost(1)
		t.partial = t.partial[:0]
		t.skipping = true
		return
	}
	t.partial = append(t.partial, rest...)
}

// follow checks, once caught up, whether the path now names another file or
// the file shrank.
func (t *fileTailer) follow(ctx context.Context, h Handler) error {
	st, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		// Removed or renamed away; the writer may still append to the old
		// file until it reopens, so keep reading that.
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", t.path, err)
	}
	if dev, ino := fileID(st); dev != t.dev || ino != t.ino {
		// Rotated: finish the old file (an unterminated last line counts as
		// a line), then read the new one from its start.
		if err := t.drain(ctx, h); err != nil {
			return err
		}
		t.endPartial(ctx, h)
		f, err := os.Open(t.path)
		if errors.Is(err, os.ErrNotExist) {
			return nil // gone again; the next poll retries
		}
		if err != nil {
			return fmt.Errorf("reopen %s: %w", t.path, err)
		}
		nst, err := f.Stat()
		if err != nil {
			f.Close()
			return fmt.Errorf("stat %s: %w", t.path, err)
		}
		t.f.Close()
		t.f, t.off = f, 0
		t.dev, t.ino = fileID(nst)
		return nil
	}
	if st.Size() < t.off {
		// Truncated in place: start over.
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			return fmt.Errorf("seek %s: %w", t.path, err)
		}
		t.off = 0
		t.partial, t.skipping = t.partial[:0], false
	}
	return nil
}

func (t *fileTailer) endPartial(ctx context.Context, h Handler) {
	if len(t.partial) > 0 && !t.skipping {
		h.Line(ctx, t.partial)
	}
	t.partial, t.skipping = t.partial[:0], false
}
