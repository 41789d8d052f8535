package observe

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
)

// fakeActivity is a flow source (what the flow log and metrics fill).
type fakeActivity struct {
	flows []Flow
	err   error
}

func (f fakeActivity) Activity(_ context.Context, app string) (Activity, error) {
	a := Activity{Source: "flow log", Counters: map[string]float64{"connections_denied": 1}}
	if f.err != nil {
		return a, f.err
	}
	for _, fl := range f.flows {
		if fl.SourceApp == app || fl.DestinationApp == app {
			a.Flows = append(a.Flows, fl)
		}
	}
	return a, nil
}

// uiLab is the page over the two-cell lab with frontend → backend tcp
// 8080 enforced and a denied flow from backend to frontend.
func uiLab(t *testing.T) (*UI, *httptest.Server) {
	pol := tagged(front.GUID, "0001", back.GUID, "0002", "tcp", 8080, 8080)
	ps, c1, c2 := lab([]policy.Policy{pol}, 3)
	ui := &UI{
		Policies: ps, Cells: []Cell{c1, c2}, Names: map[string]string{front.GUID: front.Name, back.GUID: back.Name},
		Activity: []ActivitySource{fakeActivity{flows: []Flow{
			{Time: time.Unix(100, 0), SourceApp: front.GUID, DestinationApp: back.GUID, Protocol: "tcp", Port: 8080, Verdict: VerdictAllowed},
			{Time: time.Unix(200, 0), SourceApp: back.GUID, DestinationApp: front.GUID, Protocol: "tcp", Port: 9999, Verdict: VerdictDenied},
		}}},
	}
	srv := httptest.NewServer(ui.Handler())
	t.Cleanup(srv.Close)
	return ui, srv
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

func TestUIEndpoints(t *testing.T) {
	_, srv := uiLab(t)
	code, ct, body := get(t, srv.URL+"/")
	if code != 200 || !strings.HasPrefix(ct, "text/html") || !strings.Contains(body, "<title>netman: the policy graph</title>") {
		t.Errorf("page: %d %s", code, ct)
	}
	code, ct, body = get(t, srv.URL+"/graph.svg")
	if code != 200 || ct != "image/svg+xml" {
		t.Errorf("svg: %d %s", code, ct)
	}
	if boxes, edges := svgBoxes(t, body); len(boxes) != 2 || edges != 1 {
		t.Errorf("svg: %d apps, %d edges, want 2 and 1", len(boxes), edges)
	}
	if code, _, body = get(t, srv.URL+"/graph.dot"); code != 200 || !strings.Contains(body, `"`+front.GUID+`" -> "`+back.GUID+`" [label="tcp 8080"];`) {
		t.Errorf("dot: %d\n%s", code, body)
	}
	var g Graph
	_, _, body = get(t, srv.URL+"/api/graph?app=backend")
	if err := json.Unmarshal([]byte(body), &g); err != nil || len(g.Edges) != 1 || len(g.Apps) != 2 {
		t.Errorf("graph of app backend (by name): %v %s", err, body)
	}

	var d AppDetail
	_, _, body = get(t, srv.URL+"/api/apps/"+back.GUID)
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err, body)
	}
	if d.App.Name != "backend" || len(d.Inbound) != 1 || d.Inbound[0].Source != front.GUID || len(d.Outbound) != 0 {
		t.Errorf("backend's policies: %+v", d)
	}
	wantInst := []Instance{{Cell: "10.244.0.12:8721", Handle: "h-b", IP: "10.255.12.2", AllowRules: 1, Backend: "iptables", AgentStatus: "ok"}}
	if diff := cmp.Diff(wantInst, d.Instances, cmpIgnoreLastCycle); diff != "" {
		t.Errorf("instances (-want +got):\n%s", diff)
	}
	if len(d.Denied) != 1 || d.Denied[0].Port != 9999 || len(d.Activity) != 1 || len(d.Activity[0].Flows) != 2 {
		t.Errorf("activity %+v, denied %+v", d.Activity, d.Denied)
	}

	var r Result
	_, _, body = get(t, srv.URL+"/api/trace?source="+front.GUID+"&destination="+back.GUID+"&protocol=tcp&port=8080")
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Verdict != VerdictAllowed || r.Source.Name != "frontend" {
		t.Errorf("trace: %v %s", err, body)
	}
	_, _, body = get(t, srv.URL+"/api/trace?source="+back.GUID+"&destination="+front.GUID+"&protocol=tcp&port=9999")
	if err := json.Unmarshal([]byte(body), &r); err != nil || r.Verdict != VerdictDenied {
		t.Errorf("trace back: %v %s", err, body)
	}
	if code, _, _ := get(t, srv.URL+"/api/trace?source=x&destination=y&protocol=icmp&port=1"); code != 400 {
		t.Errorf("bad trace query: %d", code)
	}
}

var cmpIgnoreLastCycle = cmp.Transformer("noLastCycle", func(i Instance) Instance { i.LastCycle = ""; return i })

func TestUIReportsFailingSources(t *testing.T) {
	ui, srv := uiLab(t)
	ui.Activity = []ActivitySource{fakeActivity{err: errors.New("flow log unreadable")}}
	var d AppDetail
	_, _, body := get(t, srv.URL+"/api/apps/"+back.GUID)
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Problems) != 1 || !strings.Contains(d.Problems[0], "flow log unreadable") {
		t.Errorf("problems %q", d.Problems)
	}
	ui.Policies = &fakePolicies{err: errors.New("policy server down")}
	if code, _, body := get(t, srv.URL+"/api/graph"); code != http.StatusBadGateway || !strings.Contains(body, "policy server down") {
		t.Errorf("graph with the policy server down: %d %s", code, body)
	}
}
