// Package filelock is the cross-process lock every on-host writer shares:
// an exclusive flock on a lock file plus an in-process mutex, as upstream's
// lib/filelock (iptables writers, the container metadata store).
package filelock

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Lock is an exclusive flock on a file plus an in-process mutex. The mutex
// makes goroutines of one process queue cheaply; the flock serialises
// processes.
type Lock struct {
	path string
	mu   *sync.Mutex
}

var (
	mutexesMu sync.Mutex
	mutexes   = map[string]*sync.Mutex{}
)

// New returns the lock for path; every lock on the same path in this
// process shares one mutex.
func New(path string) *Lock {
	mutexesMu.Lock()
	defer mutexesMu.Unlock()
	m := mutexes[path]
	if m == nil {
		m = &sync.Mutex{}
		mutexes[path] = m
	}
	return &Lock{path: path, mu: m}
}

// Acquire blocks until the lock is held or ctx ends; the returned function
// releases it.
func (l *Lock) Acquire(ctx context.Context) (func(), error) {
	if err := lockMutex(ctx, l.mu); err != nil {
		return nil, err
	}
	f, err := openLockFile(l.path)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	if err := flock(ctx, f); err != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("locking %s: %w", l.path, err)
	}
	return func() {
		// Closing the descriptor releases the flock.
		_ = f.Close()
		l.mu.Unlock()
	}, nil
}

func openLockFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating lock directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock file: %w", err)
	}
	return f, nil
}

func lockMutex(ctx context.Context, mu *sync.Mutex) error {
	if mu.TryLock() {
		return nil
	}
	done := make(chan struct{})
	go func() {
		mu.Lock()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		go func() { <-done; mu.Unlock() }()
		return ctx.Err()
	}
}

// flock takes LOCK_EX on f, giving up when ctx ends. A contended lock waits
// in a blocking flock on another goroutine, so waiting costs no polling; if
// ctx ends first, that goroutine closes f once it gets the lock.
func flock(ctx context.Context, f *os.File) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		_ = f.Close()
		return err
	}
	done := make(chan error, 1)
	go func() {
		for {
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			done <- err
			return
		}
	}()
	select {
	case err := <-done:
		if err != nil {
			_ = f.Close()
		}
		return err
	case <-ctx.Done():
		go func() { <-done; _ = f.Close() }()
		return ctx.Err()
	}
}
