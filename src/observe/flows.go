package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/jsonhttp"
)

// PathFlows is the agent debug server's flow endpoint: GET
// /app-flows?app_guid=G, an app's recent flow records from the cell's
// iptables-logger flow log (the agent's flow_log_file).
const PathFlows = "/app-flows"

// Flow record messages in iptables-logger's output file.
const (
	FlowAllowedMessage = "cfnetworking.iptables.flow-allowed"
	FlowDeniedMessage  = "cfnetworking.iptables.flow-denied"
)

// Flows is an app's recent flows on one cell (GET /app-flows): the newest
// records naming the app at either end, at most FlowsPerVerdict of each
// verdict, newest first.
type Flows struct {
	File  string `json:"file"`
	Flows []Flow `json:"flows"`
}

// FlowsPerVerdict is how many allowed and how many denied flows an
// app's answer holds at most.
const FlowsPerVerdict = 50

// flowLogTail is how much of the end of the flow log is read: at about
// 800 bytes a record, the last 5,000 records or so of the cell.
const flowLogTail = 4 << 20

// ReadFlowLog reads the flow records naming appGUID (as source or
// destination app) from the last part of an iptables-logger output file,
// newest first, at most perVerdict allowed and perVerdict denied ones.
// Packet events and lines that are not flow records are skipped.
func ReadFlowLog(path, appGUID string, perVerdict int) ([]Flow, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	start := max(st.Size()-flowLogTail, 0)
	buf := make([]byte, st.Size()-start)
	if _, err := f.ReadAt(buf, start); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if start > 0 {
		// The first line is cut: start after it.
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			buf = buf[i+1:]
		}
	}
	out := []Flow{}
	counts := map[string]int{}
	for len(buf) > 0 {
		// Newest (last) line first.
		line := bytes.TrimRight(buf, "\n")
		i := bytes.LastIndexByte(line, '\n')
		buf = line[:max(i, 0)]
		line = line[i+1:]
		if !bytes.Contains(line, []byte(".flow-")) || !bytes.Contains(line, []byte(appGUID)) {
			continue
		}
		fl, ok := ParseFlowRecord(line)
		if !ok || (fl.SourceApp != appGUID && fl.DestinationApp != appGUID) || counts[fl.Verdict] >= perVerdict {
			continue
		}
		counts[fl.Verdict]++
		out = append(out, fl)
		if counts[VerdictAllowed] >= perVerdict && counts[VerdictDenied] >= perVerdict {
			break
		}
		if i < 0 {
			break
		}
	}
	return out, nil
}

// flowRecord is an iptables-logger flow record (docs/iptables-logger.md).
type flowRecord struct {
	Timestamp json.RawMessage `json:"timestamp"`
	Message   string          `json:"message"`
	Data      struct {
		Source      flowEnd `json:"source"`
		Destination flowEnd `json:"destination"`
		Flow        struct {
			Verdict    string `json:"verdict"`
			SrcIP      string `json:"src_ip"`
			DstIP      string `json:"dst_ip"`
			DstPort    int    `json:"dst_port"`
			Protocol   string `json:"protocol"`
			SrcPackets int64  `json:"src_packets"`
			SrcBytes   int64  `json:"src_bytes"`
			DstPackets int64  `json:"dst_packets"`
			DstBytes   int64  `json:"dst_bytes"`
			DurationMS int64  `json:"duration_ms"`
		} `json:"flow"`
	} `json:"data"`
}

type flowEnd struct {
	AppGUID string `json:"app_guid"`
	HostIP  string `json:"host_ip"`
}

// ParseFlowRecord reads one flow record line (either
// log_timestamp_format); ok is false for any other line.
func ParseFlowRecord(line []byte) (Flow, bool) {
	var r flowRecord
	if json.Unmarshal(line, &r) != nil || (r.Message != FlowAllowedMessage && r.Message != FlowDeniedMessage) {
		return Flow{}, false
	}
	f := r.Data.Flow
	verdict := VerdictAllowed
	if r.Message == FlowDeniedMessage {
		verdict = VerdictDenied
	}
	host := r.Data.Source.HostIP
	if host == "" {
		host = r.Data.Destination.HostIP
	}
	return Flow{
		Time: recordTime(r.Timestamp), SourceApp: r.Data.Source.AppGUID, DestinationApp: r.Data.Destination.AppGUID,
		SourceIP: f.SrcIP, DestinationIP: f.DstIP, Protocol: strings.ToLower(f.Protocol), Port: f.DstPort, Verdict: verdict,
		BytesOut: f.SrcBytes, BytesIn: f.DstBytes, PacketsOut: f.SrcPackets, PacketsIn: f.DstPackets, DurationMS: f.DurationMS, Cell: host,
	}, true
}

// recordTime reads lager's timestamp: RFC 3339 or the deprecated
// "seconds.nanoseconds" string.
func recordTime(raw json.RawMessage) time.Time {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return time.Time{}
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC()
	}
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}
	}
	var nanos int64
	if frac != "" {
		frac = (frac + "000000000")[:9]
		nanos, _ = strconv.ParseInt(frac, 10, 64)
	}
	return time.Unix(n, nanos).UTC()
}

// FlowsHandler serves PathFlows from the flow log at path (the agent's
// debug server).
func FlowsHandler(path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		guid := r.URL.Query().Get("app_guid")
		if guid == "" {
			WriteJSON(w, nil, errors.New("want app_guid"), http.StatusBadRequest)
			return
		}
		flows, err := ReadFlowLog(path, guid, FlowsPerVerdict)
		if errors.Is(err, os.ErrNotExist) {
			// No flow yet: the logger creates the file when it starts.
			flows, err = []Flow{}, nil
		}
		WriteJSON(w, Flows{File: path, Flows: flows}, err, http.StatusInternalServerError)
	})
}

// Flows is GET /app-flows?app_guid=guid.
func (d *AgentDebug) Flows(ctx context.Context, guid string) (Flows, error) {
	var f Flows
	_, err := d.c.Do(ctx, jsonhttp.Request{Path: PathFlows + "?app_guid=" + url.QueryEscape(guid)}, &f)
	return f, err
}

// FlowCell is a cell whose agent serves its flow log (AgentDebug).
type FlowCell interface {
	Name() string
	Flows(ctx context.Context, guid string) (Flows, error)
}

// CellFlows is an ActivitySource: the flow logs of the cells, read
// through their agents' debug servers (PathFlows). A cell whose agent has
// no flow_log_file (404) adds nothing; other failures are reported, and
// the error is returned only when no cell answered.
type CellFlows []FlowCell

// FlowLogSource is CellFlows' Activity.Source.
const FlowLogSource = "flow log (iptables-logger)"

// Activity merges the cells' flows for the app, newest first, with their
// counts by verdict and bytes each way as counters.
func (cs CellFlows) Activity(ctx context.Context, guid string) (Activity, error) {
	a := Activity{Source: FlowLogSource, Flows: []Flow{}, Counters: map[string]float64{}}
	var errs []error
	answered := 0
	for _, c := range cs {
		f, err := c.Flows(ctx, guid)
		var se *jsonhttp.StatusError
		switch {
		case errors.As(err, &se) && se.Code == http.StatusNotFound:
			continue
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", c.Name(), err))
			continue
		}
		answered++
		a.Flows = append(a.Flows, f.Flows...)
	}
	if answered == 0 && len(errs) > 0 {
		return a, errors.Join(errs...)
	}
	sort.SliceStable(a.Flows, func(i, j int) bool { return a.Flows[i].Time.After(a.Flows[j].Time) })
	for _, f := range a.Flows {
		a.Counters["flows "+f.Verdict]++
		if f.Verdict == VerdictAllowed {
			a.Counters["bytes sent (allowed flows)"] += float64(f.BytesOut)
			a.Counters["bytes received (allowed flows)"] += float64(f.BytesIn)
		}
	}
	for _, err := range errs {
		a.Problems = append(a.Problems, err.Error())
	}
	return a, nil
}

// ActivitySources are the page's traffic sources over the cells' agents
// (AgentDebug serves both): the flow logs (CellFlows) and the per-app
// metrics (CellMetrics); none when no cell serves them.
func ActivitySources(cells []Cell) []ActivitySource {
	var fc CellFlows
	var mc CellMetrics
	for _, c := range cells {
		if f, ok := c.(FlowCell); ok {
			fc = append(fc, f)
		}
		if m, ok := c.(MetricsCell); ok {
			mc = append(mc, m)
		}
	}
	var out []ActivitySource
	if len(fc) > 0 {
		out = append(out, fc)
	}
	if len(mc) > 0 {
		out = append(out, mc)
	}
	return out
}
