package lifecycle_test

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

// recordingSink keeps every log line for assertions.
type recordingSink struct {
	mu   sync.Mutex
	logs []lager.LogFormat
}

func (r *recordingSink) Log(l lager.LogFormat) {
	r.mu.Lock()
	r.logs = append(r.logs, l)
	r.mu.Unlock()
}

func (r *recordingSink) all() []lager.LogFormat {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.logs)
}

func (r *recordingSink) find(message string) []lager.LogFormat {
	var out []lager.LogFormat
	for _, l := range r.all() {
		if l.Message == message {
			out = append(out, l)
		}
	}
	return out
}

func newTestLogger() (lager.Logger, *recordingSink) {
	logger := lager.NewLogger("test")
	sink := &recordingSink{}
	logger.RegisterSink(sink)
	return logger, sink
}

// recorder is a shared, ordered event log for fake members.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

func (r *recorder) has(e string) bool { return slices.Contains(r.get(), e) }

// fakeMember is a runner whose lifecycle the test drives.
type fakeMember struct {
	name     string
	rec      *recorder
	gate     chan struct{} // when set, readiness waits for it to close
	startErr error         // exit with this before becoming ready
	fail     chan error    // after ready, exit with what arrives here
	stopErr  error         // returned when signalled
}

func (f *fakeMember) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	f.rec.add("start " + f.name)
	if f.startErr != nil {
		return f.startErr
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-signals:
			f.rec.add("stop " + f.name)
			return f.stopErr
		}
	}
	// Recorded before ready is closed: the group may start the next member
	// as soon as it is.
	f.rec.add("ready " + f.name)
	close(ready)
	select {
	case <-signals:
		f.rec.add("stop " + f.name)
		return f.stopErr
	case err := <-f.fail:
		f.rec.add("exit " + f.name)
		return err
	}
}

// startProcess runs r and waits until it is ready.
func startProcess(t *testing.T, r ifrit.Runner) ifrit.Process {
	t.Helper()
	p := ifrit.Background(r)
	select {
	case <-p.Ready():
	case err := <-p.Wait():
		// A runner that signals ready and then exits at once makes both
		// cases ready, and select picks at random; each Wait() channel
		// gets the exit error, so waitExit still sees it.
		select {
		case <-p.Ready():
		default:
			t.Fatalf("runner exited before ready: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("runner not ready after 5s")
	}
	return p
}

// stopProcess signals p and returns its exit error.
func stopProcess(t *testing.T, p ifrit.Process) error {
	t.Helper()
	p.Signal(os.Interrupt)
	return waitExit(t, p)
}

func waitExit(t *testing.T, p ifrit.Process) error {
	t.Helper()
	select {
	case err := <-p.Wait():
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("runner did not exit within 5s")
		return nil
	}
}
