package observe

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// A small deployment: two spaces; frontend → backend → db, backend ⇄
// worker (a cycle), worker → itself, and an app in another space that
// calls the backend.
var (
	gFront  = AppInfo{GUID: "a1", Name: "frontend", SpaceGUID: "s1", OrgGUID: "o1", Instances: 2}
	gBack   = AppInfo{GUID: "a2", Name: "backend", SpaceGUID: "s1", OrgGUID: "o1", Instances: 1}
	gDB     = AppInfo{GUID: "a3", Name: "db", SpaceGUID: "s1", OrgGUID: "o1", Instances: 1}
	gWorker = AppInfo{GUID: "a4", Name: "worker", SpaceGUID: "s1", OrgGUID: "o1", Instances: 1}
	gOther  = AppInfo{GUID: "a5", Name: "reports", SpaceGUID: "s2", OrgGUID: "o2", Instances: 1}
	gIdle   = AppInfo{GUID: "a6", Name: "idle", SpaceGUID: "s2", OrgGUID: "o2", Instances: 1}
)

func known() map[string]AppInfo {
	m := map[string]AppInfo{}
	for _, a := range []AppInfo{gFront, gBack, gDB, gWorker, gOther, gIdle} {
		m[a.GUID] = a
	}
	return m
}

var graphPolicies = []policy.Policy{
	tagged("a1", "0001", "a2", "0002", "tcp", 8080, 8080),
	tagged("a1", "0001", "a2", "0002", "udp", 9000, 9010),
	tagged("a2", "0002", "a3", "0003", "tcp", 5432, 5432),
	tagged("a2", "0002", "a4", "0004", "tcp", 7000, 7000),
	tagged("a4", "0004", "a2", "0002", "tcp", 443, 443),
	tagged("a4", "0004", "a4", "0004", "tcp", 7001, 7001),
	tagged("a5", "0005", "a2", "0002", "tcp", 8080, 8080),
	tagged("a9", "0009", "a3", "0003", "tcp", 5432, 5432), // an app no cell runs
}

func TestBuildGraphFilters(t *testing.T) {
	names := func(g Graph) []string {
		var out []string
		for _, a := range g.Apps {
			out = append(out, a.Label())
		}
		return out
	}
	edges := func(g Graph) []string {
		var out []string
		for _, e := range g.Edges {
			out = append(out, e.Source+">"+e.Destination+" "+strings.Join(e.Ports, ","))
		}
		return out
	}
	all := BuildGraph(graphPolicies, known(), Filter{})
	if diff := cmp.Diff([]string{"a9", "backend", "db", "frontend", "idle", "reports", "worker"}, names(all)); diff != "" {
		t.Errorf("all apps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{
		"a1>a2 tcp 8080,udp 9000-9010", "a2>a3 tcp 5432", "a2>a4 tcp 7000", "a4>a2 tcp 443", "a4>a4 tcp 7001", "a5>a2 tcp 8080", "a9>a3 tcp 5432",
	}, edges(all)); diff != "" {
		t.Errorf("all edges (-want +got):\n%s", diff)
	}
	if b, _ := all.App("a2"); b.Tag != "0002" {
		t.Errorf("backend's tag %q, want it from the policies", b.Tag)
	}
	// Space s2: reports (and its peer, the backend) and idle, without policies.
	s2 := BuildGraph(graphPolicies, known(), Filter{Space: "s2"})
	if diff := cmp.Diff([]string{"backend", "idle", "reports"}, names(s2)); diff != "" {
		t.Errorf("space s2 apps (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a5>a2 tcp 8080"}, edges(s2)); diff != "" {
		t.Errorf("space s2 edges (-want +got):\n%s", diff)
	}
	// App db: who reaches it.
	db := BuildGraph(graphPolicies, known(), Filter{App: "a3"})
	if diff := cmp.Diff([]string{"a2>a3 tcp 5432", "a9>a3 tcp 5432"}, edges(db)); diff != "" {
		t.Errorf("app db edges (-want +got):\n%s", diff)
	}
	if o := BuildGraph(graphPolicies, known(), Filter{Org: "o9"}); len(o.Apps)+len(o.Edges) != 0 {
		t.Errorf("unknown org: %+v", o)
	}
}

func TestGraphDOTAndSVGGolden(t *testing.T) {
	g := BuildGraph(graphPolicies, known(), Filter{})
	var dot, svg strings.Builder
	if err := g.WriteDOT(&dot); err != nil {
		t.Fatal(err)
	}
	if err := g.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "graph.dot"), []byte(dot.String()))
	golden.Check(t, filepath.Join("testdata", "graph.svg"), []byte(svg.String()))
}

// box is an app's rectangle in the SVG.
type box struct{ x, y, w, h float64 }

// svgBoxes parses svg as XML (it must be well-formed) and returns each
// app's rectangle by guid and the number of edges drawn.
func svgBoxes(t *testing.T, svg string) (map[string]box, int) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(svg))
	boxes := map[string]box{}
	edges, current := 0, ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		at := map[string]string{}
		for _, a := range se.Attr {
			at[a.Name.Local] = a.Value
		}
		switch {
		case se.Name.Local == "g" && at["class"] == "app":
			current = at["data-guid"]
		case se.Name.Local == "g" && at["class"] == "edge":
			edges++
			current = ""
		case se.Name.Local == "rect" && current != "":
			f := func(k string) float64 { v, _ := strconv.ParseFloat(at[k], 64); return v }
			boxes[current] = box{f("x"), f("y"), f("width"), f("height")}
			current = ""
		}
	}
	return boxes, edges
}

func TestSVGLayout(t *testing.T) {
	g := BuildGraph(graphPolicies, known(), Filter{})
	var svg strings.Builder
	if err := g.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	boxes, edges := svgBoxes(t, svg.String())
	if len(boxes) != len(g.Apps) || edges != len(g.Edges) {
		t.Fatalf("%d app boxes and %d edges drawn, want %d and %d", len(boxes), edges, len(g.Apps), len(g.Edges))
	}
	for a, ba := range boxes {
		for b, bb := range boxes {
			if a < b && ba.x < bb.x+bb.w && bb.x < ba.x+ba.w && ba.y < bb.y+bb.h && bb.y < ba.y+ba.h {
				t.Errorf("apps %s and %s overlap: %+v %+v", a, b, ba, bb)
			}
		}
	}
	// Layers run left to right along the acyclic part: frontend, backend, db.
	if !(boxes["a1"].x < boxes["a2"].x && boxes["a2"].x < boxes["a3"].x) {
		t.Errorf("frontend %v, backend %v, db %v: want left to right", boxes["a1"], boxes["a2"], boxes["a3"])
	}
	// Names are escaped.
	odd := BuildGraph([]policy.Policy{tagged("x", "1", "y", "2", "tcp", 1, 1)}, map[string]AppInfo{"x": {GUID: "x", Name: `<a&"b">`, Instances: 1}}, Filter{})
	svg.Reset()
	if err := odd.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	if b, _ := svgBoxes(t, svg.String()); len(b) != 2 {
		t.Errorf("escaped graph: %d boxes", len(b))
	}
	var dot strings.Builder
	if err := odd.WriteDOT(&dot); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dot.String(), `"x" [label="<a&\"b\">\n1 instance"];`) {
		t.Errorf("DOT quoting:\n%s", dot.String())
	}
}

func TestCollectApps(t *testing.T) {
	_, c1, c2 := lab(nil, 1)
	c2.cs = append(c2.cs, Container{Handle: "h-x", IP: "10.255.12.3", AppGUID: "x", AppName: "from-log-config", SpaceGUID: "s", OrgGUID: "o"})
	apps, errs := CollectApps(context.Background(), []Cell{c1, c2, &fakeCell{name: "down", down: true}}, map[string]string{front.GUID: "frontend"})
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "cell down") {
		t.Errorf("errors %v, want one for the cell that is down", errs)
	}
	want := map[string]AppInfo{
		front.GUID: {GUID: front.GUID, Name: "frontend", Instances: 1, Cells: []string{c1.name}},
		back.GUID:  {GUID: back.GUID, Instances: 1, Cells: []string{c2.name}},
		"x":        {GUID: "x", Name: "from-log-config", SpaceGUID: "s", OrgGUID: "o", Instances: 1, Cells: []string{c2.name}},
	}
	if diff := cmp.Diff(want, apps); diff != "" {
		t.Errorf("apps (-want +got):\n%s", diff)
	}
}
