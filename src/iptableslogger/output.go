package iptableslogger

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
)

// Output is the augmented log file (output_log_file). Every Write appends
// whole lines; Check reopens the file when log rotation moved or removed it,
// so lines never go on into a rotated-away file for more than a second.
type Output struct {
	path string

	mu  sync.Mutex
	f   *os.File
	dev uint64
	ino uint64
}

// OpenOutput opens (creating, 0644, never truncating) the output file.
func OpenOutput(path string) (*Output, error) {
	o := &Output{path: path}
	if err := o.reopen(); err != nil {
		return nil, err
	}
	return o, nil
}

// Write appends p, which should hold whole lines, in one write.
func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return 0, os.ErrClosed
	}
	return o.f.Write(p)
}

// Check reopens the file if its path no longer names the file being written
// (removed, or replaced by another inode). The daemon calls it every second.
func (o *Output) Check(context.Context) error {
	st, err := os.Stat(o.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stat output log file: %w", err)
	}
	if err == nil {
		dev, ino := fileID(st)
		o.mu.Lock()
		same := dev == o.dev && ino == o.ino
		o.mu.Unlock()
		if same {
			return nil
		}
	}
	return o.reopen()
}

func (o *Output) reopen() error {
	f, err := os.OpenFile(o.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open output log file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("stat output log file: %w", err)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f != nil {
		o.f.Close()
	}
	o.f = f
	o.dev, o.ino = fileID(st)
	return nil
}

// Close closes the file; later writes fail.
func (o *Output) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}

func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev, st.Ino
	}
	return 0, 0
}
