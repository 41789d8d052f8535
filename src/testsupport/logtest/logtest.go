// Package logtest gives tests a lager logger whose lines go to the test log,
// shown only when the test fails or runs verbose.
package logtest

import (
	"strings"
	"sync"
	"testing"

	"code.cloudfoundry.org/lager/v3"
)

// New returns a debug-level logger writing to tb.Log. Lines written after
// the test ends are dropped rather than panicking.
func New(tb testing.TB) lager.Logger {
	w := &writer{tb: tb}
	tb.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	logger := lager.NewLogger("test")
	logger.RegisterSink(lager.NewWriterSink(w, lager.DEBUG))
	return logger
}

type writer struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
