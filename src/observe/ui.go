package observe

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/policy"
)

//go:embed ui.html
var uiPage []byte

// Flow is one connection as a flow source saw it: the apps at both ends
// (GUIDs; "" for an end that is no app container of the reporting cell)
// and their addresses, the protocol and destination port, the verdict
// (allowed or denied), the bytes and packets each way (out: from the
// source) where known, and the cell that reported it.
type Flow struct {
	Time           time.Time `json:"time"`
	SourceApp      string    `json:"source_app"`
	DestinationApp string    `json:"destination_app"`
	SourceIP       string    `json:"source_ip,omitempty"`
	DestinationIP  string    `json:"destination_ip,omitempty"`
	Protocol       string    `json:"protocol"`
	Port           int       `json:"port"`
	Verdict        string    `json:"verdict"`
	BytesOut       int64     `json:"bytes_out,omitempty"`
	BytesIn        int64     `json:"bytes_in,omitempty"`
	PacketsOut     int64     `json:"packets_out,omitempty"`
	PacketsIn      int64     `json:"packets_in,omitempty"`
	DurationMS     int64     `json:"duration_ms,omitempty"`
	Cell           string    `json:"cell,omitempty"`
}

// Activity is what one source knows about an app's traffic: its recent
// flows and its counters (bytes, packets, connections allowed and
// denied), named as the source names them, and what it could not read
// (a cell that did not answer) while it still had an answer.
type Activity struct {
	Source   string             `json:"source"`
	Flows    []Flow             `json:"flows,omitempty"`
	Counters map[string]float64 `json:"counters,omitempty"`
	Problems []string           `json:"-"`
}

// ActivitySource is the page's extension point for traffic data (per-app
// metrics, flow logs): each source's Activity shows on the app's panel,
// its denied flows under "denied connections".
type ActivitySource interface {
	Activity(ctx context.Context, appGUID string) (Activity, error)
}

// UI is the read-only web page: the policy graph, each app's policies,
// instances and what their cells enforce, traffic from the activity
// sources, and traces. Handler serves it.
type UI struct {
	Policies PolicySource
	Cells    []Cell
	Names    map[string]string // app guid → name
	Filter   Filter            // the page's initial filter
	Activity []ActivitySource
}

// AppDetail is an app's panel (GET api/apps/<guid>).
type AppDetail struct {
	App       AppInfo    `json:"app"`
	Outbound  []Edge     `json:"outbound"`
	Inbound   []Edge     `json:"inbound"`
	Instances []Instance `json:"instances"`
	Activity  []Activity `json:"activity"`
	Denied    []Flow     `json:"denied"`
	Problems  []string   `json:"problems,omitempty"`
	Apps      []AppInfo  `json:"apps"` // the graph's apps, for names
}

// Instance is one of the app's containers and what its cell enforces for
// it.
type Instance struct {
	Cell        string `json:"cell"`
	Handle      string `json:"handle"`
	IP          string `json:"ip"`
	Marked      string `json:"marked,omitempty"` // the tag its packets carry
	AllowRules  int    `json:"allow_rules"`      // rules accepting traffic to it
	Backend     string `json:"backend,omitempty"`
	LastCycle   string `json:"last_cycle,omitempty"`
	AgentStatus string `json:"agent_status"` // ok, or what went wrong
}

// Handler serves the page at "/" and its data under it; all paths are
// relative, so the page also works mounted under a prefix
// (http.StripPrefix).
func (u *UI) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(uiPage)
	})
	mux.HandleFunc("GET /api/filter", func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, u.Filter, nil, http.StatusBadGateway) })
	mux.HandleFunc("GET /api/graph", func(w http.ResponseWriter, r *http.Request) {
		g, err := u.graph(r)
		WriteJSON(w, g, err, http.StatusBadGateway)
	})
	mux.HandleFunc("GET /graph.svg", func(w http.ResponseWriter, r *http.Request) {
		g, err := u.graph(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "image/svg+xml")
		_ = g.WriteSVG(w)
	})
	mux.HandleFunc("GET /graph.dot", func(w http.ResponseWriter, r *http.Request) {
		g, err := u.graph(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
		_ = g.WriteDOT(w)
	})
	mux.HandleFunc("GET /api/apps/{guid}", func(w http.ResponseWriter, r *http.Request) {
		d, err := u.detail(r.Context(), r.PathValue("guid"))
		WriteJSON(w, d, err, http.StatusBadGateway)
	})
	mux.HandleFunc("GET /api/trace", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		port, err := strconv.Atoi(q.Get("port"))
		proto := strings.ToLower(q.Get("protocol"))
		if err != nil || port < 1 || port > policy.MaxPort || (proto != policy.ProtocolTCP && proto != policy.ProtocolUDP) || q.Get("source") == "" || q.Get("destination") == "" {
			WriteJSON(w, nil, errors.New("want source, destination, protocol tcp|udp and port 1-65535"), http.StatusBadRequest)
			return
		}
		app := func(guid string) App { return App{GUID: guid, Name: u.Names[guid]} }
		res, err := Trace(r.Context(), u.Policies, u.Cells, Query{Source: app(q.Get("source")), Destination: app(q.Get("destination")), Protocol: proto, Port: port})
		WriteJSON(w, res, err, http.StatusBadGateway)
	})
	return mux
}

func (u *UI) graph(r *http.Request) (Graph, error) {
	q := r.URL.Query()
	f := Filter{Space: q.Get("space"), Org: q.Get("org"), App: q.Get("app")}
	if !q.Has("space") && !q.Has("org") && !q.Has("app") {
		f = u.Filter
	}
	if guid, ok := u.guidOf(f.App); ok {
		f.App = guid
	}
	ps, err := u.Policies.Policies(r.Context())
	if err != nil {
		return Graph{}, err
	}
	apps, _ := CollectApps(r.Context(), u.Cells, u.Names)
	return BuildGraph(ps, apps, f), nil
}

// guidOf resolves an app name of Names.
func (u *UI) guidOf(app string) (string, bool) {
	for guid, name := range u.Names {
		if name == app && app != "" {
			return guid, true
		}
	}
	return "", false
}

func (u *UI) detail(ctx context.Context, guid string) (AppDetail, error) {
	ps, err := u.Policies.Policies(ctx, guid)
	if err != nil {
		return AppDetail{}, err
	}
	apps, errs := CollectApps(ctx, u.Cells, u.Names)
	g := BuildGraph(ps, apps, Filter{App: guid})
	d := AppDetail{Outbound: []Edge{}, Inbound: []Edge{}, Instances: []Instance{}, Activity: []Activity{}, Denied: []Flow{}, Apps: g.Apps}
	d.App, _ = g.App(guid)
	d.App.GUID = guid
	for _, err := range errs {
		d.Problems = append(d.Problems, err.Error())
	}
	for _, e := range g.Edges {
		if e.Source == guid {
			d.Outbound = append(d.Outbound, e)
		}
		if e.Destination == guid && e.Source != guid {
			d.Inbound = append(d.Inbound, e)
		}
	}
	for _, cell := range u.Cells {
		cs, err := cell.Containers(ctx)
		if err != nil {
			continue
		}
		var mine []Container
		for _, c := range cs.Containers {
			if c.AppGUID == guid {
				mine = append(mine, c)
			}
		}
		if len(mine) == 0 {
			continue
		}
		e, err := cell.Enforced(ctx)
		for _, c := range mine {
			in := Instance{Cell: cell.Name(), Handle: c.Handle, IP: c.IP, AgentStatus: "ok"}
			switch {
			case err != nil:
				in.AgentStatus = err.Error()
			default:
				in.Marked, in.Backend = e.Marks(c.IP), e.Backend
				for _, dst := range e.Destinations {
					if dst.IP == c.IP {
						in.AllowRules += len(dst.Rules)
					}
				}
				if e.LastCycle != nil {
					in.LastCycle = e.LastCycle.UTC().Format(time.RFC3339)
				}
				if e.LastError != "" {
					in.AgentStatus = "last cycle failed: " + e.LastError
				}
			}
			d.Instances = append(d.Instances, in)
		}
	}
	for _, src := range u.Activity {
		a, err := src.Activity(ctx, guid)
		if err != nil {
			d.Problems = append(d.Problems, a.Source+": "+err.Error())
			continue
		}
		for _, p := range a.Problems {
			d.Problems = append(d.Problems, a.Source+": "+p)
		}
		d.Activity = append(d.Activity, a)
		for _, f := range a.Flows {
			if f.Verdict == VerdictDenied {
				d.Denied = append(d.Denied, f)
			}
		}
	}
	sort.Slice(d.Denied, func(i, j int) bool { return d.Denied[i].Time.After(d.Denied[j].Time) })
	return d, nil
}

// WriteJSON answers v as JSON, or err as {"error": "..."} with
// errStatus (the agent's endpoints and the page's data).
func WriteJSON(w http.ResponseWriter, v any, err error, errStatus int) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(errStatus)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(v)
}
