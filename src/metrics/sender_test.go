package metrics_test

import (
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/cloudfoundry/sonde-go/events"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/netman-release/netman/src/metrics"
)

// fakeMetron is a loopback UDP listener decoding dropsonde envelopes.
type fakeMetron struct {
	conn *net.UDPConn
}

func newFakeMetron(t *testing.T) *fakeMetron {
	t.Helper()
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeMetron{conn: conn}
}

func (m *fakeMetron) port() int { return m.conn.LocalAddr().(*net.UDPAddr).Port }

func (m *fakeMetron) read(t *testing.T, n int) []*events.Envelope {
	t.Helper()
	var out []*events.Envelope
	buf := make([]byte, 65536)
	for range n {
		if err := m.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		size, _, err := m.conn.ReadFromUDP(buf)
		if err != nil {
			t.Fatalf("reading envelope %d of %d: %v", len(out)+1, n, err)
		}
		env := &events.Envelope{}
		if err := proto.Unmarshal(buf[:size], env); err != nil {
			t.Fatalf("unmarshal envelope: %v", err)
		}
		out = append(out, env)
	}
	return out
}

func (m *fakeMetron) expectNothing(t *testing.T) {
	t.Helper()
	if err := m.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	if n, _, err := m.conn.ReadFromUDP(buf); err == nil {
		t.Errorf("unexpected datagram of %d bytes", n)
	}
}

func valueEnvelope(origin, name string, v float64, unit string) *events.Envelope {
	return &events.Envelope{
		Origin:    proto.String(origin),
		EventType: events.Envelope_ValueMetric.Enum(),
		ValueMetric: &events.ValueMetric{
			Name: proto.String(name), Value: proto.Float64(v), Unit: proto.String(unit),
		},
	}
}

func counterEnvelope(origin, name string, delta, total uint64) *events.Envelope {
	return &events.Envelope{
		Origin:    proto.String(origin),
		EventType: events.Envelope_CounterEvent.Enum(),
		CounterEvent: &events.CounterEvent{
			Name: proto.String(name), Delta: proto.Uint64(delta), Total: proto.Uint64(total),
		},
	}
}

func TestSenderEmitsDropsondeEnvelopes(t *testing.T) {
	metron := newFakeMetron(t)
	s, err := metrics.NewSender(lager.NewLogger("test"), "silk-daemon", metron.port())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	before := time.Now().UnixNano()
	s.SendValue("numberLeases", 3, "")
	s.SendDuration("iptablesEnforceTime", 1500*time.Microsecond)
	s.IncrementCounter("renewSuccess")
	s.IncrementCounter("renewSuccess")
	s.AddCounter("renewSuccess", 5)
	s.SendValue("uptime", 30, "seconds")
	got := metron.read(t, 6)
	after := time.Now().UnixNano()

	for i, env := range got {
		if ts := env.GetTimestamp(); ts < before || ts > after {
			t.Errorf("envelope %d timestamp %d outside [%d, %d]", i, ts, before, after)
		}
	}
	want := []*events.Envelope{
		valueEnvelope("silk-daemon", "numberLeases", 3, ""),
		valueEnvelope("silk-daemon", "iptablesEnforceTime", 1.5, "ms"),
		counterEnvelope("silk-daemon", "renewSuccess", 1, 1),
		counterEnvelope("silk-daemon", "renewSuccess", 1, 2),
		counterEnvelope("silk-daemon", "renewSuccess", 5, 7),
		valueEnvelope("silk-daemon", "uptime", 30, "seconds"),
	}
	// UDP on loopback keeps order for a single sender socket.
	if diff := cmp.Diff(want, got, protocmp.Transform(), protocmp.IgnoreFields(&events.Envelope{}, "timestamp")); diff != "" {
		t.Errorf("envelopes (-want +got):\n%s", diff)
	}

	reg := s.Registry()
	if v, _ := reg.Value("iptablesEnforceTime"); v != (metrics.Value{Name: "iptablesEnforceTime", Value: 1.5, Unit: "ms"}) {
		t.Errorf("registry value = %+v", v)
	}
	if total, _ := reg.Counter("renewSuccess"); total != 7 {
		t.Errorf("registry total = %d, want 7", total)
	}
	if n := s.SendErrors(); n != 0 {
		t.Errorf("SendErrors = %d, want 0", n)
	}
}

func TestSenderWithoutMetronOnlyRecords(t *testing.T) {
	s, err := metrics.NewSender(lager.NewLogger("test"), "vxlan-policy-agent", 0)
	if err != nil {
		t.Fatal(err)
	}
	s.SendDuration("totalPollTime", 2*time.Second)
	s.IncrementCounter("http_error")
	if v, ok := s.Registry().Value("totalPollTime"); !ok || v.Value != 2000 || v.Unit != "ms" {
		t.Errorf("totalPollTime = %+v, %v", v, ok)
	}
	if total, _ := s.Registry().Counter("http_error"); total != 1 {
		t.Errorf("http_error = %d", total)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
}

func TestSenderAfterClose(t *testing.T) {
	metron := newFakeMetron(t)
	s, err := metrics.NewSender(nil, "silk-controller", metron.port())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s.SendValue("uptime", 1, "seconds")
	s.IncrementCounter("c")
	metron.expectNothing(t)
	if n := s.SendErrors(); n != 0 {
		t.Errorf("sends after Close counted as errors: %d", n)
	}
	if _, ok := s.Registry().Value("uptime"); !ok {
		t.Error("registry not updated after Close")
	}
}

func TestNilSenderIsInert(t *testing.T) {
	var s *metrics.Sender
	s.SendValue("a", 1, "")
	s.SendDuration("b", time.Second)
	s.IncrementCounter("c")
	s.AddCounter("d", 2)
	if s.Registry() != nil || s.SendErrors() != 0 || s.Close() != nil {
		t.Error("nil sender not inert")
	}
}

func TestNewSenderErrors(t *testing.T) {
	tests := []struct {
		name   string
		origin string
		port   int
	}{
		{"empty origin", "", 3457},
		{"port too large", "x", 70000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := metrics.NewSender(lager.NewLogger("test"), tt.origin, tt.port); err == nil {
				t.Error("want error")
			}
		})
	}
}

type failingConn struct{ writes int }

func (f *failingConn) Write([]byte) (int, error) { f.writes++; return 0, errors.New("no buffer space") }
func (f *failingConn) Close() error              { return nil }

type recordingSink struct {
	mu   sync.Mutex
	logs []lager.LogFormat
}

func (r *recordingSink) Log(l lager.LogFormat) {
	r.mu.Lock()
	r.logs = append(r.logs, l)
	r.mu.Unlock()
}

func (r *recordingSink) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, l := range r.logs {
		out = append(out, l.Message)
	}
	return out
}

func TestSenderCountsErrorsAndThrottlesLogs(t *testing.T) {
	logger := lager.NewLogger("test")
	sink := &recordingSink{}
	logger.RegisterSink(sink)
	s, err := metrics.NewSender(logger, "silk-daemon", 0)
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1000, 0)
	conn := &failingConn{}
	s.SetTransportForTest(conn, func() time.Time { return clock })

	for range 5 {
		s.SendValue("v", 1, "")
		s.IncrementCounter("c")
	}
	if n := s.SendErrors(); n != 10 {
		t.Errorf("SendErrors = %d, want 10", n)
	}
	want := []string{"test.metrics-sender.send-failed"}
	if diff := cmp.Diff(want, sink.messages()); diff != "" {
		t.Errorf("logs within a minute (-want +got):\n%s", diff)
	}
	if sink.logs[0].LogLevel != lager.DEBUG {
		t.Errorf("send failure logged at %v, want debug", sink.logs[0].LogLevel)
	}

	clock = clock.Add(59 * time.Second)
	s.SendValue("v", 1, "")
	if got := len(sink.messages()); got != 1 {
		t.Errorf("after 59s: %d log lines, want 1", got)
	}
	clock = clock.Add(2 * time.Second)
	s.SendValue("v", 1, "")
	if got := len(sink.messages()); got != 2 {
		t.Errorf("after 61s: %d log lines, want 2", got)
	}
	if v, ok := s.Registry().Value("v"); !ok || v.Value != 1 {
		t.Error("registry not updated despite send failures")
	}
	if total, _ := s.Registry().Counter("c"); total != 5 {
		t.Errorf("counter total = %d, want 5", total)
	}
}

func TestSenderConcurrentSends(t *testing.T) {
	metron := newFakeMetron(t)
	s, err := metrics.NewSender(lager.NewLogger("test"), "o", metron.port())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				s.IncrementCounter("c")
			}
		}()
	}
	wg.Wait()
	envs := metron.read(t, 100)
	var maxTotal uint64
	for _, e := range envs {
		maxTotal = max(maxTotal, e.GetCounterEvent().GetTotal())
	}
	if maxTotal != 100 {
		t.Errorf("highest total = %d, want 100", maxTotal)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestSenderEmitsAppLogs(t *testing.T) {
	metron := newFakeMetron(t)
	s, err := metrics.NewSender(lager.NewLogger("test"), "vxlan-policy-agent", metron.port())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SendAppLog(metrics.AppLog{AppID: "app-guid", SourceType: "CELL", SourceInstance: "2",
		Message: "Security group rules were updated", Tags: map[string]string{"source_id": "app-guid"}})
	got := metron.read(t, 1)[0]
	lm := got.GetLogMessage()
	if got.GetEventType() != events.Envelope_LogMessage || got.GetOrigin() != "vxlan-policy-agent" ||
		string(lm.GetMessage()) != "Security group rules were updated" || lm.GetAppId() != "app-guid" ||
		lm.GetSourceType() != "CELL" || lm.GetSourceInstance() != "2" || lm.GetMessageType() != events.LogMessage_OUT ||
		got.GetTags()["source_id"] != "app-guid" {
		t.Errorf("envelope %v", got)
	}
	if _, ok := s.Registry().Value("Security group rules were updated"); ok {
		t.Error("app logs must not reach the metrics registry")
	}
}

func TestNewSenderAt(t *testing.T) {
	s, err := metrics.NewSenderAt(lager.NewLogger("test"), "policy-server", "127.0.0.1:3457")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := metrics.NewSenderAt(lager.NewLogger("test"), "policy-server", "10.0.0.1:3457"); err == nil || !strings.HasPrefix(err.Error(), "metron_address: ") {
		t.Errorf("a metron address off loopback = %v, want a metron_address error", err)
	}
}
