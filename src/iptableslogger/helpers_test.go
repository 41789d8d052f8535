package iptableslogger

import (
	"context"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
)

func umask() os.FileMode {
	m := syscall.Umask(0)
	syscall.Umask(m)
	return os.FileMode(m)
}

// recorder is a Handler that keeps what it is given.
type recorder struct {
	mu      sync.Mutex
	lines   []string
	lost    uint64
	flushes int
}

func (r *recorder) Line(_ context.Context, line []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, string(line))
}

func (r *recorder) Lost(n uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost += n
}

func (r *recorder) Flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushes++
}

func (r *recorder) snapshot() ([]string, uint64, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...), r.lost, r.flushes
}

// runTailer runs tl in the background until the test ends.
func runTailer(t *testing.T, tl Tailer, h Handler) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tl.Run(ctx, h) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Error("tailer did not stop within 10 s")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// logSink keeps every log line.
type logSink struct {
	mu   sync.Mutex
	logs []lager.LogFormat
}

func (s *logSink) Log(l lager.LogFormat) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, l)
}

func (s *logSink) all() []lager.LogFormat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]lager.LogFormat(nil), s.logs...)
}

func recordingLogger() (lager.Logger, *logSink) {
	s := &logSink{}
	l := lager.NewLogger("test")
	l.RegisterSink(s)
	return l, s
}
