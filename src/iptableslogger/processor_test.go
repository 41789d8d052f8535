package iptableslogger

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

var fixedTime = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return fixedTime }

// countingWriter records each Write separately.
type countingWriter struct {
	writes [][]byte
	err    error
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), w.err
}

func (w *countingWriter) all() string { return string(bytes.Join(w.writes, nil)) }

func newSender(t *testing.T) *metrics.Sender {
	t.Helper()
	s, err := metrics.NewSender(logtest.New(t), "iptables-logger", 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func counter(s *metrics.Sender, name string) uint64 {
	n, _ := s.Registry().Counter(name)
	return n
}

func TestProcessor(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	addContainer(t, store, "dst-handle", "10.255.18.2", map[string]any{"app_id": "dst-app", "space_id": "dst-space", "org_id": "dst-org"})
	sender := newSender(t)
	out := &countingWriter{}
	p := NewProcessor(logtest.New(t), NewContainers(store, "10.0.16.5", "cell-guid"), out, TimestampRFC3339, fixedClock, sender)

	for _, l := range []string{
		"Nov 23 10:00:00 cell-7 kernel: [1.0] eth0: link up",
		syslogIngressAllowedTCP,                             // destination 10.255.18.2 is known
		"Nov 23 10:00:00 cell-7 kernel: usb 1-1: OK_STATUS", // unparseable
		syslogEgressAllowedTCP,                              // source 10.255.18.2
		kmsgEgressDeniedTCP,                                 // source 10.255.77.2 is unknown
	} {
		p.Line(ctx, []byte(l))
	}
	p.Lost(2)
	if len(out.writes) != 0 {
		t.Fatalf("wrote before Flush: %q", out.writes)
	}
	p.Flush()
	if len(out.writes) != 1 {
		t.Fatalf("%d writes for one batch, want 1", len(out.writes))
	}
	known := Container{ContainerID: "dst-handle", AppGUID: "dst-app", SpaceGUID: "dst-space", OrganizationGUID: "dst-org", HostIP: "10.0.16.5", HostGUID: "cell-guid"}
	unknown := Container{HostIP: "10.0.16.5", HostGUID: "cell-guid"}
	var want []byte
	for _, e := range []struct {
		line string
		c    Container
	}{{syslogIngressAllowedTCP, known}, {syslogEgressAllowedTCP, known}, {kmsgEgressDeniedTCP, unknown}} {
		pkt, _ := Parse(e.line)
		want = AppendEvent(want, fixedTime, TimestampRFC3339, pkt, e.c)
	}
	if got := out.all(); got != string(want) {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
	if n := counter(sender, MetricUnparseableLines); n != 1 {
		t.Errorf("%s = %d, want 1", MetricUnparseableLines, n)
	}
	if n := counter(sender, MetricLostLines); n != 2 {
		t.Errorf("%s = %d, want 2", MetricLostLines, n)
	}

	// The store is read again in the next batch: a container added since
	// is found.
	addContainer(t, store, "new-handle", "10.255.77.2", map[string]any{"app_id": "new-app"})
	p.Line(ctx, []byte(kmsgEgressDeniedTCP))
	p.Flush()
	if got := string(out.writes[1]); !strings.Contains(got, `"container_id":"new-handle","app_guid":"new-app"`) {
		t.Errorf("after the store changed: %s", got)
	}
	// An empty batch writes nothing and sends no counter.
	p.Flush()
	if len(out.writes) != 2 || counter(sender, MetricUnparseableLines) != 1 {
		t.Errorf("empty flush: %d writes", len(out.writes))
	}
}

func TestProcessorLargeBatchesAreWrittenInPieces(t *testing.T) {
	out := &countingWriter{}
	p := NewProcessor(logtest.New(t), NewContainers(newStore(t), "h", "g"), out, TimestampDeprecated, fixedClock, nil)
	for range 1000 {
		p.Line(context.Background(), []byte(syslogIngressAllowedTCP))
	}
	p.Flush()
	if len(out.writes) < 2 {
		t.Fatalf("%d writes", len(out.writes))
	}
	for i, w := range out.writes {
		if len(w) > flushAt+4096 || !bytes.HasSuffix(w, []byte("}\n")) {
			t.Errorf("write %d: %d bytes, whole lines: %v", i, len(w), bytes.HasSuffix(w, []byte("}\n")))
		}
	}
	if n := strings.Count(out.all(), "\n"); n != 1000 {
		t.Errorf("%d lines", n)
	}
}

func TestProcessorFailuresAreLoggedNotFatal(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	addContainer(t, store, "h", "10.255.18.2", map[string]any{"app_id": "a"})
	logger, logs := recordingLogger()
	out := &countingWriter{err: errors.New("disk full")}
	p := NewProcessor(logger, NewContainers(store, "h", "g"), out, TimestampDeprecated, fixedClock, nil)
	p.Line(ctx, []byte(syslogIngressAllowedTCP))
	p.Flush()
	// Corrupt the store: events go on with the last good index.
	if err := os.WriteFile(store.Path(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.VersionPath(), []byte("42"), 0o600); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.Line(ctx, []byte(syslogIngressAllowedTCP))
		p.Flush()
	}
	if len(out.writes) != 4 || !strings.Contains(string(out.writes[3]), `"app_guid":"a"`) {
		t.Errorf("writes: %q", out.writes)
	}
	count := func(msg string) int {
		n := 0
		for _, l := range logs.all() {
			if l.Message == "test."+msg && l.LogLevel == lager.ERROR {
				n++
			}
		}
		return n
	}
	// Once per minute, not once per batch.
	if count("write-output-log-file") != 1 || count("read-container-metadata") != 1 {
		t.Errorf("error logs: %+v", logs.all())
	}
}
