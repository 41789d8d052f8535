package observe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// flowLine is an iptables-logger flow record as the logger writes it
// (docs/iptables-logger.md#record), timestamp ts as given (RFC 3339 or
// the deprecated seconds.nanoseconds).
func flowLine(ts, message, srcApp, dstApp, srcIP, dstIP string, port int, srcBytes, dstBytes int) string {
	end := func(app string) string {
		if app == "" {
			return `{}`
		}
		return fmt.Sprintf(`{"container_id":"c-%s","app_guid":%q,"space_guid":"s","organization_guid":"o","host_ip":"10.0.16.5","host_guid":"cell-guid"}`, app[:4], app)
	}
	verdict := "allowed"
	if strings.HasSuffix(message, "denied") {
		verdict = "denied"
	}
	return fmt.Sprintf(`{"timestamp":%q,"level":"info","source":"cfnetworking.iptables","message":%q,"data":{"destination":%s,"flow":{"verdict":%q,"src_ip":%q,"dst_ip":%q,"src_port":53630,"dst_port":%d,"protocol":"TCP","icmp_type":0,"icmp_code":0,"src_packets":5,"src_bytes":%d,"dst_packets":4,"dst_bytes":%d,"duration_ms":999},"source":%s}}`,
		ts, message, end(dstApp), verdict, srcIP, dstIP, port, srcBytes, dstBytes, end(srcApp))
}

// packetLine is a packet event (what the logger writes for every LOG line).
const packetLine = `{"timestamp":"2026-12-06T17:40:58.000000000Z","level":"info","source":"cfnetworking.iptables","message":"cfnetworking.iptables.ingress-denied","data":{"destination":{"app_guid":"b0000000-0000-0000-0000-000000000002"},"packet":{"src_ip":"10.255.12.2"}}}`

func writeFlowLog(t *testing.T, lines ...string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "iptables.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestReadFlowLog(t *testing.T) {
	const fe, be = "f0000000-0000-0000-0000-000000000001", "b0000000-0000-0000-0000-000000000002"
	path := writeFlowLog(t,
		flowLine("2026-12-06T17:40:57.5Z", FlowAllowedMessage, fe, be, "10.255.12.2", "10.255.13.2", 8080, 273, 1268),
		packetLine,
		flowLine("1796578858.250000000", FlowDeniedMessage, "", be, "10.255.12.2", "10.255.13.2", 8080, 60, 0),
		"not json at all",
		flowLine("2026-12-06T17:40:59Z", FlowAllowedMessage, fe, "", "10.255.12.2", "10.244.0.1", 9443, 100, 200),
		flowLine("2026-12-06T17:41:00Z", FlowAllowedMessage, "c0000000-0000-0000-0000-000000000003", "", "10.255.14.2", "10.244.0.1", 9443, 1, 1),
	)
	allowedFE := Flow{Time: time.Date(2026, 12, 6, 17, 40, 57, 5e8, time.UTC), SourceApp: fe, DestinationApp: be, SourceIP: "10.255.12.2", DestinationIP: "10.255.13.2",
		Protocol: "tcp", Port: 8080, Verdict: VerdictAllowed, BytesOut: 273, BytesIn: 1268, PacketsOut: 5, PacketsIn: 4, DurationMS: 999, Cell: "10.0.16.5"}
	denied := Flow{Time: time.Unix(1796578858, 25e7).UTC(), DestinationApp: be, SourceIP: "10.255.12.2", DestinationIP: "10.255.13.2",
		Protocol: "tcp", Port: 8080, Verdict: VerdictDenied, BytesOut: 60, PacketsOut: 5, PacketsIn: 4, DurationMS: 999, Cell: "10.0.16.5"}
	egress := Flow{Time: time.Date(2026, 12, 6, 17, 40, 59, 0, time.UTC), SourceApp: fe, SourceIP: "10.255.12.2", DestinationIP: "10.244.0.1",
		Protocol: "tcp", Port: 9443, Verdict: VerdictAllowed, BytesOut: 100, BytesIn: 200, PacketsOut: 5, PacketsIn: 4, DurationMS: 999, Cell: "10.0.16.5"}
	for _, tc := range []struct {
		name       string
		app        string
		perVerdict int
		want       []Flow
	}{
		{"backend: both verdicts, newest first", be, 10, []Flow{denied, allowedFE}},
		{"frontend: its egress and c2c flows", fe, 10, []Flow{egress, allowedFE}},
		{"cap per verdict keeps the newest", fe, 1, []Flow{egress}},
		{"cap per verdict counts each verdict", be, 1, []Flow{denied, allowedFE}},
		{"an app with no flow", "d0000000-0000-0000-0000-000000000004", 10, []Flow{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFlowLog(path, tc.app, tc.perVerdict)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("flows (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := ReadFlowLog(filepath.Join(t.TempDir(), "none"), be, 10); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

// TestReadFlowLogTail: only the end of a big log is read, and the line
// cut at its start is skipped rather than misread.
func TestReadFlowLogTail(t *testing.T) {
	const be = "b0000000-0000-0000-0000-000000000002"
	old := flowLine("2026-12-06T10:00:00Z", FlowDeniedMessage, "", be, "10.255.12.2", "10.255.13.2", 1111, 60, 0)
	recent := flowLine("2026-12-06T11:00:00Z", FlowDeniedMessage, "", be, "10.255.12.2", "10.255.13.2", 2222, 60, 0)
	lines := []string{old}
	for n := len(old); n < flowLogTail+len(packetLine); n += len(packetLine) + 1 {
		lines = append(lines, packetLine)
	}
	lines = append(lines, recent)
	got, err := ReadFlowLog(writeFlowLog(t, lines...), be, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Port != 2222 {
		t.Errorf("flows %+v, want only the recent one (port 2222)", got)
	}
}

func TestFlowsEndpoint(t *testing.T) {
	const be = "b0000000-0000-0000-0000-000000000002"
	path := writeFlowLog(t, flowLine("2026-12-06T17:40:57Z", FlowDeniedMessage, "", be, "10.255.12.2", "10.255.13.2", 8080, 60, 0))
	srv := httptest.NewServer(FlowsHandler(path))
	t.Cleanup(srv.Close)
	d := NewAgentDebug(srv.URL, 5*time.Second)
	f, err := d.Flows(context.Background(), be)
	if err != nil || f.File != path || len(f.Flows) != 1 || f.Flows[0].Verdict != VerdictDenied {
		t.Errorf("flows %+v %v", f, err)
	}
	if code, _, body := get(t, srv.URL+"?app_guid="); code != http.StatusBadRequest || !strings.Contains(body, "want app_guid") {
		t.Errorf("no app_guid: %d %s", code, body)
	}
	// Before the logger wrote its first line: no flows, no error.
	srv2 := httptest.NewServer(FlowsHandler(filepath.Join(t.TempDir(), "iptables.log")))
	t.Cleanup(srv2.Close)
	if f, err := NewAgentDebug(srv2.URL, 5*time.Second).Flows(context.Background(), be); err != nil || len(f.Flows) != 0 {
		t.Errorf("no log yet: %+v %v", f, err)
	}
}

// fakeFlowCell is a cell's agent serving its flow log: flows per call
// (the last one repeats), or err.
type fakeFlowCell struct {
	name  string
	mu    sync.Mutex
	calls int
	flows [][]Flow
	err   error
}

func (c *fakeFlowCell) Name() string { return c.name }

func (c *fakeFlowCell) Flows(_ context.Context, guid string) (Flows, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return Flows{}, c.err
	}
	all := c.flows[min(c.calls, len(c.flows)-1)]
	c.calls++
	out := Flows{File: c.name + "/iptables.log", Flows: []Flow{}}
	for _, f := range all {
		if f.SourceApp == guid || f.DestinationApp == guid {
			out.Flows = append(out.Flows, f)
		}
	}
	return out, nil
}

func TestCellFlows(t *testing.T) {
	const be = "b0000000-0000-0000-0000-000000000002"
	a := Flow{Time: time.Unix(100, 0), DestinationApp: be, Verdict: VerdictAllowed, BytesOut: 10, BytesIn: 20}
	d := Flow{Time: time.Unix(200, 0), DestinationApp: be, Verdict: VerdictDenied, BytesOut: 60}
	notFound := NewAgentDebug(httptest.NewServer(http.NotFoundHandler()).URL, time.Second)
	for _, tc := range []struct {
		name     string
		cells    CellFlows
		want     []Flow
		counters map[string]float64
		problems int
		err      bool
	}{
		{"merged newest first", CellFlows{&fakeFlowCell{name: "c1", flows: [][]Flow{{a}}}, &fakeFlowCell{name: "c2", flows: [][]Flow{{d}}}},
			[]Flow{d, a}, map[string]float64{"flows allowed": 1, "flows denied": 1, "bytes sent (allowed flows)": 10, "bytes received (allowed flows)": 20}, 0, false},
		{"a cell without flow log adds nothing", CellFlows{notFound, &fakeFlowCell{name: "c2", flows: [][]Flow{{d}}}},
			[]Flow{d}, map[string]float64{"flows denied": 1}, 0, false},
		{"a failing cell is a problem", CellFlows{&fakeFlowCell{name: "c1", err: fmt.Errorf("refused")}, &fakeFlowCell{name: "c2", flows: [][]Flow{{d}}}},
			[]Flow{d}, map[string]float64{"flows denied": 1}, 1, false},
		{"every cell failing is an error", CellFlows{&fakeFlowCell{name: "c1", err: fmt.Errorf("refused")}}, []Flow{}, map[string]float64{}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.cells.Activity(context.Background(), be)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want error %v", err, tc.err)
			}
			if diff := cmp.Diff(tc.want, got.Flows); diff != "" {
				t.Errorf("flows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.counters, got.Counters); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if len(got.Problems) != tc.problems || got.Source != FlowLogSource {
				t.Errorf("source %q problems %q, want %d", got.Source, got.Problems, tc.problems)
			}
		})
	}
}

func TestActivitySources(t *testing.T) {
	if s := ActivitySources([]Cell{&fakeCell{name: "c1"}}); s != nil {
		t.Errorf("cells without flows or metrics: %v, want none", s)
	}
	s := ActivitySources([]Cell{&fakeCell{name: "c1"}, NewAgentDebug("10.0.0.1:8721", time.Second)})
	if len(s) != 2 {
		t.Fatalf("sources %v, want the agent's flows and metrics", s)
	}
	if cf, ok := s[0].(CellFlows); !ok || len(cf) != 1 || cf[0].Name() != "10.0.0.1:8721" {
		t.Errorf("first source %v, want the agent's flows", s[0])
	}
	if cm, ok := s[1].(CellMetrics); !ok || len(cm) != 1 || cm[0].Name() != "10.0.0.1:8721" {
		t.Errorf("second source %v, want the agent's metrics", s[1])
	}
}
