package netmon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/testsupport/eventually"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// logBuffer collects lager JSON lines; safe for concurrent writers.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

type logLine struct {
	Source   string         `json:"source"`
	Message  string         `json:"message"`
	LogLevel int            `json:"log_level"`
	Data     map[string]any `json:"data"`
}

func (l *logBuffer) lines(t *testing.T) []logLine {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logLine
	for s := range strings.Lines(l.b.String()) {
		var ll logLine
		if err := json.Unmarshal([]byte(s), &ll); err != nil {
			t.Fatalf("log line %q: %v", s, err)
		}
		out = append(out, ll)
	}
	return out
}

func (l *logBuffer) messages(t *testing.T) []string {
	var out []string
	for _, ll := range l.lines(t) {
		out = append(out, ll.Message)
	}
	return out
}

func newLogger(name string) (lager.Logger, *logBuffer) {
	buf := &logBuffer{}
	logger := lager.NewLogger(name)
	logger.RegisterSink(lager.NewWriterSink(buf, lager.DEBUG))
	return logger, buf
}

// counter is a RuleCounter returning its values in turn (the last one
// repeatedly), or err.
type counter struct {
	mu     sync.Mutex
	values []int
	err    error
	calls  int
}

func (c *counter) CountRules(context.Context) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls++
	if c.err != nil {
		return 0, c.err
	}
	v := c.values[0]
	if len(c.values) > 1 {
		c.values = c.values[1:]
	}
	return v, nil
}

func registrySender(t *testing.T) *metrics.Sender {
	t.Helper()
	s, err := metrics.NewSender(logtest.New(t), Origin, 0)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func values(s *metrics.Sender) map[string]metrics.Value {
	out := map[string]metrics.Value{}
	for _, name := range []string{MetricNetInterfaceCount, MetricIPTablesRuleCount, MetricNFTablesRuleCount, MetricNFTablesSetElementCount, MetricOverlayTxBytes, MetricOverlayRxBytes, MetricOverlayRxDropped, MetricOverlayTxDropped} {
		if v, ok := s.Registry().Value(name); ok {
			out[name] = v
		}
	}
	return out
}

var vtepStats = map[string]string{"tx_bytes": "1000\n", "rx_bytes": "2000\n", "rx_dropped": "3\n", "tx_dropped": "4\n"}

func TestMeasureSendsEveryMetric(t *testing.T) {
	logger, logs := newLogger("test")
	sender := registrySender(t)
	agg := &Aggregator{}
	m := &Monitor{
		Logger:     logger,
		Sender:     sender,
		Rules:      &counter{values: []int{42}},
		Interfaces: func() (int, error) { return 7, nil },
		Stats:      Stats{Dir: fakeSysfs(t, "silk-vtep", vtepStats), Interface: "silk-vtep"},
		Aggregate:  agg,
	}
	m.Measure(context.Background())

	want := map[string]metrics.Value{
		"NetInterfaceCount": {Name: "NetInterfaceCount", Value: 7, Unit: "Metric"},
		"IPTablesRuleCount": {Name: "IPTablesRuleCount", Value: 42, Unit: "Metric"},
		"OverlayTxBytes":    {Name: "OverlayTxBytes", Value: 1000, Unit: "Metric"},
		"OverlayRxBytes":    {Name: "OverlayRxBytes", Value: 2000, Unit: "Metric"},
		"OverlayRxDropped":  {Name: "OverlayRxDropped", Value: 3, Unit: "Metric"},
		"OverlayTxDropped":  {Name: "OverlayTxDropped", Value: 4, Unit: "Metric"},
	}
	if diff := cmp.Diff(want, values(sender)); diff != "" {
		t.Errorf("metrics (-want +got):\n%s", diff)
	}
	wantMsgs := []string{"test.measure.measure-start"}
	for range 6 {
		wantMsgs = append(wantMsgs, "test.measure.metric-sent")
	}
	wantMsgs = append(wantMsgs, "test.measure.measure-complete")
	if diff := cmp.Diff(wantMsgs, logs.messages(t)); diff != "" {
		t.Errorf("log messages (-want +got):\n%s", diff)
	}
	// Upstream's metric-sent data: {"<metric>": value}.
	if d := logs.lines(t)[2].Data; d["IPTablesRuleCount"] != float64(42) {
		t.Errorf("metric-sent data = %v", d)
	}
	if s := agg.Flush(); s != (Summary{Count: 1, Maximum: 42, Minimum: 42, Average: 42}) {
		t.Errorf("aggregate = %+v", s)
	}
}

// nftCounter is an NFTCounter returning counts or err.
type nftCounter struct {
	counts NFTCounts
	err    error
}

func (c nftCounter) CountNFT(context.Context) (NFTCounts, error) { return c.counts, c.err }

// TestMeasureSendsNFTablesCounts: with the nftables backend the two counts
// of netman's table follow IPTablesRuleCount; a failure to count them is
// logged as count-nftables-rules and ends the round, as the others.
func TestMeasureSendsNFTablesCounts(t *testing.T) {
	logger, logs := newLogger("test")
	sender := registrySender(t)
	m := &Monitor{
		Logger: logger, Sender: sender, Rules: &counter{values: []int{42}},
		NFT:        nftCounter{counts: NFTCounts{Rules: 31, Elements: 50000}},
		Interfaces: func() (int, error) { return 7, nil },
		Stats:      Stats{Dir: fakeSysfs(t, "silk-vtep", vtepStats), Interface: "silk-vtep"},
	}
	m.Measure(context.Background())
	got := values(sender)
	for name, want := range map[string]float64{"IPTablesRuleCount": 42, "NFTablesRuleCount": 31, "NFTablesSetElementCount": 50000, "OverlayTxDropped": 4} {
		if v := got[name]; v.Value != want || v.Unit != "Metric" {
			t.Errorf("%s = %+v, want %v", name, v, want)
		}
	}
	var order []string
	for _, l := range logs.lines(t) {
		for k := range l.Data {
			if l.Message == "test.measure.metric-sent" && k != "session" {
				order = append(order, k)
			}
		}
	}
	if want := []string{"NetInterfaceCount", "IPTablesRuleCount", "NFTablesRuleCount", "NFTablesSetElementCount", "OverlayTxBytes", "OverlayRxBytes", "OverlayRxDropped", "OverlayTxDropped"}; !cmp.Equal(order, want) {
		t.Errorf("metric-sent order %v, want %v", order, want)
	}

	logger, logs = newLogger("test")
	sender = registrySender(t)
	m.Logger, m.Sender, m.NFT = logger, sender, nftCounter{err: errors.New("netlink: boom")}
	m.Measure(context.Background())
	if _, sent := values(sender)["NFTablesRuleCount"]; sent || len(values(sender)) != 2 {
		t.Errorf("sent after a failed nftables count: %v", values(sender))
	}
	lines := logs.lines(t)
	if failed := lines[len(lines)-2]; failed.Message != "test.measure.count-nftables-rules" || failed.LogLevel != int(lager.ERROR) {
		t.Errorf("failure line = %+v", failed)
	}
}

func TestMeasureStopsAtFirstFailure(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ifs        error
		rules      error
		stats      map[string]string
		wantSent   []string
		wantFailed string
	}{
		{
			name: "interfaces", ifs: errors.New("netlink: boom"),
			wantFailed: "count-network-interfaces",
		},
		{
			name: "iptables", rules: errors.New("reading nat table: boom"),
			wantSent: []string{"NetInterfaceCount"}, wantFailed: "count-iptables-rules",
		},
		{
			// No silk-vtep yet: logged every poll, never fatal, as upstream.
			name: "missing interface", stats: nil,
			wantSent: []string{"NetInterfaceCount", "IPTablesRuleCount"}, wantFailed: "read-tx-bytes",
		},
		{
			name: "rx_bytes", stats: map[string]string{"tx_bytes": "1"},
			wantSent: []string{"NetInterfaceCount", "IPTablesRuleCount", "OverlayTxBytes"}, wantFailed: "read-rx-bytes",
		},
		{
			name: "rx_dropped", stats: map[string]string{"tx_bytes": "1", "rx_bytes": "2"},
			wantSent: []string{"NetInterfaceCount", "IPTablesRuleCount", "OverlayTxBytes", "OverlayRxBytes"}, wantFailed: "read-rx-dropped",
		},
		{
			name: "tx_dropped", stats: map[string]string{"tx_bytes": "1", "rx_bytes": "2", "rx_dropped": "3"},
			wantSent: []string{"NetInterfaceCount", "IPTablesRuleCount", "OverlayTxBytes", "OverlayRxBytes", "OverlayRxDropped"}, wantFailed: "read-tx-dropped",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger, logs := newLogger("test")
			sender := registrySender(t)
			ifname := "silk-vtep"
			if tc.stats == nil {
				ifname = "not-there"
			}
			m := &Monitor{
				Logger:     logger,
				Sender:     sender,
				Rules:      &counter{values: []int{1}, err: tc.rules},
				Interfaces: func() (int, error) { return 1, tc.ifs },
				Stats:      Stats{Dir: fakeSysfs(t, ifname, tc.stats), Interface: "silk-vtep"},
			}
			m.Measure(context.Background())
			var sent []string
			for name := range values(sender) {
				sent = append(sent, name)
			}
			slices.Sort(sent)
			slices.Sort(tc.wantSent)
			if diff := cmp.Diff(tc.wantSent, sent); diff != "" {
				t.Errorf("sent (-want +got):\n%s", diff)
			}
			lines := logs.lines(t)
			if len(lines) < 2 {
				t.Fatalf("logs: %v", lines)
			}
			failed := lines[len(lines)-2]
			if failed.Message != "test.measure."+tc.wantFailed || failed.LogLevel != int(lager.ERROR) || failed.Data["error"] == "" {
				t.Errorf("failure line = %+v", failed)
			}
			if last := lines[len(lines)-1]; last.Message != "test.measure.measure-complete" {
				t.Errorf("last line = %+v", last)
			}
		})
	}
}

func TestMeasureCancelledLogsNothing(t *testing.T) {
	logger, logs := newLogger("test")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	m := &Monitor{
		Logger: logger, Sender: registrySender(t),
		Rules:      &counter{err: context.Canceled},
		Interfaces: func() (int, error) { return 1, nil },
	}
	m.Measure(ctx)
	for _, l := range logs.lines(t) {
		if l.LogLevel == int(lager.ERROR) {
			t.Errorf("error logged while stopping: %+v", l)
		}
	}
}

func TestTelemetryReport(t *testing.T) {
	logger, logs := newLogger("test")
	out, tele := newLogger("netmon")
	agg := &Aggregator{}
	for _, v := range []int{2, 4, 6} {
		agg.Add(v)
	}
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	rules := &counter{values: []int{5}}
	tr := &Telemetry{Logger: logger, Out: out, Rules: rules, Aggregate: agg, Interval: 10 * time.Minute, Now: func() time.Time { return at }}
	tr.Report(context.Background())

	lines := tele.lines(t)
	if len(lines) != 1 {
		t.Fatalf("telemetry lines: %+v", lines)
	}
	want := logLine{
		Source: "netmon", Message: "netmon.count-iptables-rules", LogLevel: int(lager.INFO),
		Data: map[string]any{
			"telemetry-source":          "netmon",
			"telemetry-time":            "2026-11-23T10:00:00Z",
			"IPTablesRuleCount":         float64(5),
			"IPTablesRuleCountInterval": float64(600),
			"IPTablesRuleMaxiumum":      float64(6),
			"IPTablesRuleAverage":       float64(4),
			"IPTablesRuleMinimum":       float64(2),
		},
	}
	if diff := cmp.Diff(want, lines[0]); diff != "" {
		t.Errorf("telemetry line (-want +got):\n%s", diff)
	}
	if s := agg.Flush(); s != (Summary{}) {
		t.Errorf("aggregate not flushed: %+v", s)
	}

	// A failed count writes nothing, keeps the period going and logs
	// upstream's message on the process logger.
	agg.Add(9)
	rules.err = errors.New("boom")
	tr.Report(context.Background())
	if n := len(tele.lines(t)); n != 1 {
		t.Errorf("telemetry lines after failure = %d", n)
	}
	if diff := cmp.Diff([]string{"test.failed-fetching-network-stats"}, logs.messages(t)); diff != "" {
		t.Errorf("process log (-want +got):\n%s", diff)
	}
	if s := agg.Flush(); s.Count != 1 {
		t.Errorf("aggregate lost on failure: %+v", s)
	}
}

func TestEveryWaitsOneIntervalFirst(t *testing.T) {
	var calls atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runRunner(ctx, every(time.Hour, func(context.Context) { calls.Add(1) }))
	}()
	time.Sleep(50 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("called %d times before the first interval", n)
	}

	ctx, cancel = context.WithCancel(context.Background())
	go func() {
		done <- runRunner(ctx, every(5*time.Millisecond, func(context.Context) {
			if calls.Add(1) == 3 {
				cancel()
			}
		}))
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("never called three times")
	}
}

func TestRunReportsAndWritesTelemetry(t *testing.T) {
	dir := t.TempDir()
	teleLog := filepath.Join(dir, "log", "netmon", "telemetry.log")
	sender := registrySender(t)
	cfg := Config{
		PollInterval: 1, MetronAddress: "127.0.0.1:3457", InterfaceName: "silk-vtep", LogPrefix: "cfnetworking",
		IPTablesLockFile: filepath.Join(dir, "iptables.lock"), TelemetryEnabled: true, TelemetryInterval: 600,
	}
	rules := &counter{values: []int{10, 20, 30}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	logger, logs := newLogger("cfnetworking.netmon")
	go func() {
		done <- Run(ctx, logger, cfg, Options{
			Sender:            sender,
			Rules:             rules,
			Interfaces:        func() (int, error) { return 3, nil },
			SysClassNet:       fakeSysfs(t, "silk-vtep", vtepStats),
			TelemetryLogFile:  teleLog,
			PollInterval:      5 * time.Millisecond,
			TelemetryInterval: 100 * time.Millisecond,
		})
	}()
	var line logLine
	eventually.True(t, "a telemetry line", 10*time.Second, func() bool {
		b, err := os.ReadFile(teleLog)
		if err != nil || !bytes.HasSuffix(b, []byte("\n")) {
			return false
		}
		first, _, _ := bytes.Cut(b, []byte("\n"))
		if err := json.Unmarshal(first, &line); err != nil {
			t.Fatalf("telemetry line %q: %v", first, err)
		}
		return true
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if line.Message != "netmon.count-iptables-rules" || line.Data["IPTablesRuleCountInterval"] != 0.1 ||
		line.Data["IPTablesRuleMaxiumum"] != float64(30) || line.Data["IPTablesRuleMinimum"] != float64(10) {
		t.Errorf("telemetry line = %+v", line)
	}
	got := values(sender)
	if got[MetricNetInterfaceCount].Value != 3 || got[MetricIPTablesRuleCount].Value != 30 || got[MetricOverlayTxDropped].Value != 4 {
		t.Errorf("metrics = %+v", got)
	}
	if _, sent := got[MetricNFTablesRuleCount]; sent {
		t.Errorf("nftables counts sent with the iptables backend: %+v", got)
	}
	// Upstream's lifecycle lines: parsed-config first, then starting once
	// the pollers run.
	msgs := logs.messages(t)
	if len(msgs) < 2 || msgs[0] != "cfnetworking.netmon.parsed-config" || !slices.Contains(msgs, "cfnetworking.netmon.starting") {
		t.Errorf("messages = %v", msgs)
	}
	for _, l := range logs.lines(t) {
		if l.LogLevel >= int(lager.ERROR) {
			t.Errorf("error logged: %+v", l)
		}
	}
}

// TestRunCountsNFTablesOnTheNFTablesBackend: enforcement_backend:
// nftables adds the counts of netman's table to every round.
func TestRunCountsNFTablesOnTheNFTablesBackend(t *testing.T) {
	sender := registrySender(t)
	cfg := Config{
		PollInterval: 1, MetronAddress: "127.0.0.1:3457", InterfaceName: "silk-vtep", LogPrefix: "cfnetworking",
		IPTablesLockFile: filepath.Join(t.TempDir(), "iptables.lock"), EnforcementBackend: BackendNFTables,
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, logtest.New(t), cfg, Options{
			Sender: sender, Rules: &counter{values: []int{12}}, NFT: nftCounter{counts: NFTCounts{Rules: 40, Elements: 7}},
			Interfaces:  func() (int, error) { return 3, nil },
			SysClassNet: fakeSysfs(t, "silk-vtep", vtepStats), PollInterval: 5 * time.Millisecond,
		})
	}()
	eventually.True(t, "a round with the nftables counts", 10*time.Second, func() bool {
		return values(sender)[MetricOverlayTxDropped].Value == 4
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := values(sender)
	if got[MetricIPTablesRuleCount].Value != 12 || got[MetricNFTablesRuleCount].Value != 40 || got[MetricNFTablesSetElementCount].Value != 7 {
		t.Errorf("metrics = %+v", got)
	}
}

func TestRunFailsWithoutTelemetryLog(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{PollInterval: 1, InterfaceName: "silk-vtep", TelemetryEnabled: true, TelemetryInterval: 1}
	err := Run(context.Background(), logtest.New(t), cfg, Options{
		Sender: registrySender(t), Rules: &counter{values: []int{1}},
		TelemetryLogFile: filepath.Join(blocker, "telemetry.log"), // parent is a file
	})
	if err == nil || !strings.HasPrefix(err.Error(), "creating telemetry log: ") {
		t.Errorf("err = %v", err)
	}
}

func TestRunFailsWithoutIPTables(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	cfg := Config{PollInterval: 1, InterfaceName: "silk-vtep", IPTablesLockFile: "/tmp/x"}
	err := Run(context.Background(), logtest.New(t), cfg, Options{Sender: registrySender(t)})
	if err == nil || !strings.Contains(err.Error(), `finding iptables: exec: "iptables-save": executable file not found`) {
		t.Errorf("err = %v", err)
	}
}

// runRunner runs r until ctx is done.
func runRunner(ctx context.Context, r ifrit.Runner) error {
	return lifecycle.RunContext(ctx, lager.NewLogger("discard"), lifecycle.Member{Name: "runner", Runner: r})
}
