package observe

import (
	"fmt"
	"html"
	"io"
	"math"
	"sort"
	"strings"
)

// Layout constants of the SVG drawing, in pixels.
const (
	svgMargin   = 24
	svgNodeH    = 44
	svgColGap   = 170
	svgRowGap   = 36
	svgCharW    = 7.2 // average width of a 12px sans-serif character
	svgMinNodeW = 110
	svgLineH    = 13
)

type placed struct {
	app        AppInfo
	layer, row int
	x, y, w    float64
}

// WriteSVG draws g as SVG without Graphviz: apps in layers from left to
// right (each app one layer right of the furthest app with a policy to
// it, cycles broken where a depth-first walk meets them), rows ordered by
// the mean row of each app's sources to keep edges short, and each edge a
// curve labelled with its policies. Every app is a <g class="app"
// data-guid="..."> and every edge a <g class="edge" data-source="..."
// data-destination="...">, for a page to attach to.
func (g Graph) WriteSVG(w io.Writer) error {
	nodes := layout(g)
	byGUID := map[string]*placed{}
	width, height := float64(2*svgMargin), float64(2*svgMargin)
	for _, n := range nodes {
		byGUID[n.app.GUID] = n
		width = math.Max(width, n.x+n.w+svgMargin)
		height = math.Max(height, n.y+svgNodeH+svgMargin)
	}
	// Edges that do not go right curve below everything.
	below := height - svgMargin + 30
	hasBack := false
	for _, e := range g.Edges {
		s, d := byGUID[e.Source], byGUID[e.Destination]
		if s != nil && d != nil && s != d && d.layer <= s.layer {
			hasBack = true
		}
	}
	if hasBack {
		height += 60
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	b.WriteString(`<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>` + "\n")
	b.WriteString(`<rect width="100%" height="100%" fill="#fff"/>` + "\n")
	if len(nodes) == 0 {
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#777">no apps</text>`+"\n", svgMargin, svgMargin+12)
	}
	for _, e := range g.Edges {
		s, d := byGUID[e.Source], byGUID[e.Destination]
		if s == nil || d == nil {
			continue
		}
		var path string
		var lx, ly float64
		switch {
		case s == d: // a loop over the top right corner
			x, y := s.x+s.w-20, s.y
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x-20, y, x-20, y-34, x+30, y-34, x+10, y)
			lx, ly = x+5, y-30
		case d.layer > s.layer:
			x1, y1 := s.x+s.w, s.y+svgNodeH/2
			x2, y2 := d.x, d.y+svgNodeH/2
			mx := (x1 + x2) / 2
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, mx, y1, mx, y2, x2, y2)
			lx, ly = mx, (y1+y2)/2
		default:
			x1, y1 := s.x+s.w/2, s.y+svgNodeH
			x2, y2 := d.x+d.w/2, d.y+svgNodeH
			path = fmt.Sprintf("M%.1f,%.1f C%.1f,%.1f %.1f,%.1f %.1f,%.1f", x1, y1, x1, below, x2, below, x2, y2)
			lx, ly = (x1+x2)/2, (y1+y2)/8+below*3/4
		}
		fmt.Fprintf(&b, `<g class="edge" data-source="%s" data-destination="%s">`, attr(e.Source), attr(e.Destination))
		fmt.Fprintf(&b, `<title>%s → %s: %s</title>`, html.EscapeString(label(byGUID, e.Source)), html.EscapeString(label(byGUID, e.Destination)), html.EscapeString(strings.Join(e.Ports, ", ")))
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="#555" stroke-width="1.4" marker-end="url(#arrow)"/>`, path)
		lw := 0.0
		for _, p := range e.Ports {
			lw = math.Max(lw, float64(len(p))*svgCharW*0.85)
		}
		lh := float64(len(e.Ports)) * svgLineH
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#fff" fill-opacity="0.9"/>`, lx-lw/2-3, ly-lh/2-2, lw+6, lh+4)
		for i, p := range e.Ports {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#333">%s</text>`, lx, ly-lh/2+float64(i+1)*svgLineH-3, html.EscapeString(p))
		}
		b.WriteString("</g>\n")
	}
	for _, n := range nodes {
		fill := "#e8f1fb"
		if n.app.Instances == 0 {
			fill = "#f2f2f2"
		}
		fmt.Fprintf(&b, `<g class="app" data-guid="%s" data-name="%s">`, attr(n.app.GUID), attr(n.app.Name))
		fmt.Fprintf(&b, `<title>%s</title>`, html.EscapeString(n.app.GUID))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" rx="6" fill="%s" stroke="#2b6cb0"/>`, n.x, n.y, n.w, svgNodeH, fill)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-weight="bold">%s</text>`, n.x+n.w/2, n.y+18, html.EscapeString(short(n.app.Label())))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="10" fill="#555">%s</text>`, n.x+n.w/2, n.y+34, html.EscapeString(instances(n.app)))
		b.WriteString("</g>\n")
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func attr(s string) string { return html.EscapeString(s) }

func label(nodes map[string]*placed, guid string) string {
	if n, ok := nodes[guid]; ok {
		return n.app.Label()
	}
	return guid
}

// short cuts labels to 36 characters (a GUID fits).
func short(s string) string {
	if r := []rune(s); len(r) > 36 {
		return string(r[:35]) + "…"
	}
	return s
}

// layout places g's apps: layers by longest path over the edges a
// depth-first walk (in label order) does not find closing a cycle, rows by
// four barycenter sweeps, columns as wide as their widest app.
func layout(g Graph) []*placed {
	idx := map[string]int{}
	nodes := make([]*placed, len(g.Apps))
	for i, a := range g.Apps {
		idx[a.GUID] = i
		nodes[i] = &placed{app: a, w: math.Max(svgMinNodeW, float64(len([]rune(short(a.Label()))))*svgCharW+24)}
	}
	out := make([][]int, len(nodes))
	in := make([][]int, len(nodes))
	for _, e := range g.Edges {
		s, okS := idx[e.Source]
		d, okD := idx[e.Destination]
		if okS && okD && s != d {
			out[s] = append(out[s], d)
		}
	}
	// Break cycles: drop edges to a node on the walk's stack.
	state := make([]int, len(nodes)) // 0 new, 1 on stack, 2 done
	forward := make([][]int, len(nodes))
	var visit func(int)
	visit = func(v int) {
		state[v] = 1
		for _, u := range out[v] {
			if state[u] == 1 {
				continue
			}
			forward[v] = append(forward[v], u)
			if state[u] == 0 {
				visit(u)
			}
		}
		state[v] = 2
	}
	for v := range nodes {
		if state[v] == 0 {
			visit(v)
		}
	}
	for v, us := range forward {
		for _, u := range us {
			in[u] = append(in[u], v)
		}
	}
	// Longest path layering (the forward edges form a DAG).
	layer := make([]int, len(nodes))
	done := make([]bool, len(nodes))
	var depth func(int) int
	depth = func(v int) int {
		if done[v] {
			return layer[v]
		}
		done[v] = true
		l := 0
		for _, u := range in[v] {
			l = max(l, depth(u)+1)
		}
		layer[v] = l
		return l
	}
	maxLayer := 0
	for v := range nodes {
		maxLayer = max(maxLayer, depth(v))
	}
	cols := make([][]int, maxLayer+1)
	for v := range nodes {
		cols[layer[v]] = append(cols[layer[v]], v)
	}
	row := make([]float64, len(nodes))
	for _, col := range cols {
		for i, v := range col {
			row[v] = float64(i)
		}
	}
	// Barycenter sweeps: down by sources, up by destinations.
	for sweep := 0; sweep < 4; sweep++ {
		order := make([]int, len(cols))
		for i := range order {
			order[i] = i
		}
		neighbours := in
		if sweep%2 == 1 {
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
			neighbours = forward
		}
		for _, c := range order {
			col := cols[c]
			key := make(map[int]float64, len(col))
			for _, v := range col {
				key[v] = row[v]
				if len(neighbours[v]) > 0 {
					sum := 0.0
					for _, u := range neighbours[v] {
						sum += row[u]
					}
					key[v] = sum / float64(len(neighbours[v]))
				}
			}
			sort.SliceStable(col, func(i, j int) bool { return key[col[i]] < key[col[j]] })
			for i, v := range col {
				row[v] = float64(i)
			}
		}
	}
	// Coordinates: columns as wide as their widest app, centred rows.
	tallest := 0
	for _, col := range cols {
		tallest = max(tallest, len(col))
	}
	x := float64(svgMargin)
	for l, col := range cols {
		colW := 0.0
		for _, v := range col {
			colW = math.Max(colW, nodes[v].w)
		}
		offset := float64(tallest-len(col)) * (svgNodeH + svgRowGap) / 2
		for i, v := range col {
			n := nodes[v]
			n.layer, n.row = l, i
			n.x = x + (colW-n.w)/2
			n.y = svgMargin + 20 + offset + float64(i)*(svgNodeH+svgRowGap)
		}
		x += colW + svgColGap
	}
	return nodes
}
