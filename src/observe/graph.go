package observe

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/netman-release/netman/src/policy"
)

// Filter narrows the graph to the apps of a space, an org or one app
// (GUIDs; "" matches all) and the apps their policies connect them to.
type Filter struct {
	Space string `json:"space,omitempty"`
	Org   string `json:"org,omitempty"`
	App   string `json:"app,omitempty"`
}

func (f Filter) empty() bool { return f == Filter{} }

func (f Filter) matches(a AppInfo) bool {
	return (f.Space == "" || a.SpaceGUID == f.Space) && (f.Org == "" || a.OrgGUID == f.Org) && (f.App == "" || a.GUID == f.App)
}

// AppInfo is an app of the graph: what the names file and the cells tell
// about it.
type AppInfo struct {
	GUID      string   `json:"guid"`
	Name      string   `json:"name,omitempty"`
	SpaceGUID string   `json:"space_guid,omitempty"`
	OrgGUID   string   `json:"org_guid,omitempty"`
	Tag       string   `json:"tag,omitempty"`
	Instances int      `json:"instances"`
	Cells     []string `json:"cells,omitempty"`
}

// Label is the app's name, else its GUID.
func (a AppInfo) Label() string {
	if a.Name != "" {
		return a.Name
	}
	return a.GUID
}

// Edge is every policy from Source to Destination.
type Edge struct {
	Source      string   `json:"source"`
	Destination string   `json:"destination"`
	Ports       []string `json:"ports"` // "tcp 8080", "udp 9000-9010", sorted
}

// Graph is the apps and the policies between them.
type Graph struct {
	Apps  []AppInfo `json:"apps"`
	Edges []Edge    `json:"edges"`
}

// App returns the app with guid.
func (g Graph) App(guid string) (AppInfo, bool) {
	for _, a := range g.Apps {
		if a.GUID == guid {
			return a, true
		}
	}
	return AppInfo{}, false
}

// CollectApps gathers what the cells know about apps (instances, space,
// org, tag, names from their log config) and names (guid → name, from
// the names file, which wins). A cell that cannot be read is skipped and
// named in the errors.
func CollectApps(ctx context.Context, cells []Cell, names map[string]string) (map[string]AppInfo, []error) {
	apps := map[string]AppInfo{}
	for guid, name := range names {
		apps[guid] = AppInfo{GUID: guid, Name: name}
	}
	var errs []error
	for _, cell := range cells {
		cs, err := cell.Containers(ctx)
		if err != nil {
			errs = append(errs, fmt.Errorf("cell %s: %w", cell.Name(), err))
			continue
		}
		for _, c := range cs.Containers {
			if c.AppGUID == "" {
				continue
			}
			a := apps[c.AppGUID]
			a.GUID = c.AppGUID
			if a.Name == "" {
				a.Name = c.AppName
			}
			a.SpaceGUID, a.OrgGUID = first(a.SpaceGUID, c.SpaceGUID), first(a.OrgGUID, c.OrgGUID)
			a.Tag = first(a.Tag, c.Tag)
			a.Instances++
			if len(a.Cells) == 0 || a.Cells[len(a.Cells)-1] != cell.Name() {
				a.Cells = append(a.Cells, cell.Name())
			}
			apps[c.AppGUID] = a
		}
	}
	return apps, errs
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// BuildGraph is the graph of ps over the apps known, narrowed by f: with
// no filter every known app and every policy; with one, the apps matching
// it and the policies from or to them (with their other ends).
func BuildGraph(ps []policy.Policy, known map[string]AppInfo, f Filter) Graph {
	info := func(guid string) AppInfo {
		if a, ok := known[guid]; ok {
			return a
		}
		return AppInfo{GUID: guid}
	}
	inGraph := map[string]bool{}
	tags := map[string]string{}
	edges := map[[2]string]map[string]bool{}
	for _, p := range ps {
		s, d := info(p.Source.ID), info(p.Destination.ID)
		tags[s.GUID], tags[d.GUID] = first(tags[s.GUID], p.Source.Tag), first(tags[d.GUID], p.Destination.Tag)
		if !f.empty() && !f.matches(s) && !f.matches(d) {
			continue
		}
		inGraph[s.GUID], inGraph[d.GUID] = true, true
		k := [2]string{s.GUID, d.GUID}
		if edges[k] == nil {
			edges[k] = map[string]bool{}
		}
		edges[k][p.Destination.Protocol+" "+portRange(p.Destination.Ports.Start, p.Destination.Ports.End)] = true
	}
	for guid, a := range known {
		if (f.empty() && a.Instances > 0) || (!f.empty() && f.matches(a)) {
			inGraph[guid] = true
		}
	}
	var g Graph
	for guid := range inGraph {
		a := info(guid)
		a.Tag = first(a.Tag, tags[guid])
		g.Apps = append(g.Apps, a)
	}
	sort.Slice(g.Apps, func(i, j int) bool {
		a, b := g.Apps[i], g.Apps[j]
		if a.Label() != b.Label() {
			return a.Label() < b.Label()
		}
		return a.GUID < b.GUID
	})
	for k, ports := range edges {
		e := Edge{Source: k[0], Destination: k[1]}
		for p := range ports {
			e.Ports = append(e.Ports, p)
		}
		sort.Slice(e.Ports, func(i, j int) bool { return lessPorts(e.Ports[i], e.Ports[j]) })
		g.Edges = append(g.Edges, e)
	}
	sort.Slice(g.Edges, func(i, j int) bool {
		a, b := g.Edges[i], g.Edges[j]
		if a.Source != b.Source {
			return a.Source < b.Source
		}
		return a.Destination < b.Destination
	})
	if g.Apps == nil {
		g.Apps = []AppInfo{}
	}
	if g.Edges == nil {
		g.Edges = []Edge{}
	}
	return g
}

// lessPorts orders "tcp 80" before "tcp 443" before "udp 53".
func lessPorts(a, b string) bool {
	pa, ra, _ := strings.Cut(a, " ")
	pb, rb, _ := strings.Cut(b, " ")
	if pa != pb {
		return pa < pb
	}
	var sa, sb int
	fmt.Sscanf(ra, "%d", &sa)
	fmt.Sscanf(rb, "%d", &sb)
	if sa != sb {
		return sa < sb
	}
	return ra < rb
}

// WriteDOT writes g in Graphviz's DOT language: one box per app (its
// name, instances), one edge per source and destination labelled with
// the policies' protocols and ports.
func (g Graph) WriteDOT(w io.Writer) error {
	var b strings.Builder
	b.WriteString("digraph netman {\n  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"sans-serif\"];\n  edge [fontname=\"sans-serif\", fontsize=10];\n")
	for _, a := range g.Apps {
		fmt.Fprintf(&b, "  %s [label=%s];\n", dotQuote(a.GUID), dotQuote(a.Label()+"\n"+instances(a)))
	}
	for _, e := range g.Edges {
		fmt.Fprintf(&b, "  %s -> %s [label=%s];\n", dotQuote(e.Source), dotQuote(e.Destination), dotQuote(strings.Join(e.Ports, "\n")))
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func instances(a AppInfo) string {
	switch a.Instances {
	case 0:
		return "no instance seen"
	case 1:
		return "1 instance"
	}
	return fmt.Sprintf("%d instances", a.Instances)
}

// dotQuote is s as a DOT quoted string (newlines as \n).
func dotQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
