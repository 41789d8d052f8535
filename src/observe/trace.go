package observe

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/policy"
)

// App is an app of a trace: its guid and, when known, its name.
type App struct {
	Name string `json:"name,omitempty"`
	GUID string `json:"guid"`
}

func (a App) String() string {
	if a.Name != "" {
		return a.Name
	}
	return a.GUID
}

// Query is what a trace asks: may Source reach Destination on Protocol
// Port?
type Query struct {
	Source, Destination App
	Protocol            string
	Port                int
}

// Verdicts of a trace.
const (
	// VerdictAllowed: a policy allows it and every cell holding an
	// instance of either app has enforced it.
	VerdictAllowed = "allowed"
	// VerdictDenied: no policy allows it, and no cell accepts it.
	VerdictDenied = "denied"
	// VerdictPending: a policy allows it but some cell has not enforced
	// it (yet, or its cycles fail).
	VerdictPending = "pending"
	// VerdictPartial: some instance pairs are accepted and some are not.
	VerdictPartial = "partial"
	// VerdictUnknown: the cells could not tell (none given, none reached,
	// no running destination instance).
	VerdictUnknown = "unknown"
)

// Step statuses.
const (
	StatusOK   = "ok"
	StatusFail = "fail"
	StatusWarn = "warn"
	StatusInfo = "info"
)

// Result is a trace's answer: the verdict, why, and each step taken.
type Result struct {
	Source      App    `json:"source"`
	Destination App    `json:"destination"`
	Protocol    string `json:"protocol"`
	Port        int    `json:"port"`
	Verdict     string `json:"verdict"`
	Reason      string `json:"reason"`
	Steps       []Step `json:"steps"`
	// Policies are the policies from source to destination (any port).
	Policies []PolicyRef `json:"policies"`
}

// Step is one thing a trace looked at.
type Step struct {
	Step   string `json:"step"`   // apps, policy, tags, containers, agent, source, egress, destination
	Status string `json:"status"` // ok, fail, warn, info
	Cell   string `json:"cell,omitempty"`
	Detail string `json:"detail"`
}

// PolicyRef is a policy as a trace shows it.
type PolicyRef struct {
	Protocol  string `json:"protocol"`
	StartPort int    `json:"start_port"`
	EndPort   int    `json:"end_port"`
	Allows    bool   `json:"allows"` // covers the query's protocol and port
}

type instance struct {
	cell int
	c    Container
}

// Trace answers q from what policies and cells hold: the policy and tags
// in the policy server, then on every cell the source and destination
// instances, whether the source cells mark the source's packets with its
// tag and whether the destination cells accept that tag on the port. A
// cell that cannot be read is a warning step, not an error; only a failed
// policy read is.
func Trace(ctx context.Context, policies PolicySource, cells []Cell, q Query) (Result, error) {
	r := Result{Source: q.Source, Destination: q.Destination, Protocol: q.Protocol, Port: q.Port, Policies: []PolicyRef{}}
	r.step("apps", StatusInfo, "", fmt.Sprintf("source %s (%s), destination %s (%s)", q.Source, q.Source.GUID, q.Destination, q.Destination.GUID))

	ps, err := policies.Policies(ctx, q.Source.GUID, q.Destination.GUID)
	if err != nil {
		return r, err
	}
	srcTag, dstTag, allowed := tags(ps, q, &r)
	if allowed {
		r.step("policy", StatusOK, "", fmt.Sprintf("a policy allows %s to reach %s on %s %d", q.Source, q.Destination, q.Protocol, q.Port))
	} else {
		detail := fmt.Sprintf("no policy allows %s to reach %s on %s %d", q.Source, q.Destination, q.Protocol, q.Port)
		if len(r.Policies) > 0 {
			var other []string
			for _, p := range r.Policies {
				other = append(other, p.Protocol+" "+portRange(p.StartPort, p.EndPort))
			}
			detail += "; policies between them allow only " + strings.Join(other, ", ")
		}
		r.step("policy", StatusFail, "", detail)
	}
	switch {
	case srcTag == "":
		r.step("tags", StatusInfo, "", fmt.Sprintf("%s has no tag: no policy names it as a source, so no cell marks its packets", q.Source))
	default:
		r.step("tags", StatusOK, "", fmt.Sprintf("%s is tag %s (packets marked %s), %s is tag %s", q.Source, srcTag, mark(srcTag), q.Destination, orNone(dstTag)))
	}
	stamp, err := policies.LastUpdated(ctx)
	if err != nil {
		r.step("policy", StatusWarn, "", "reading policies_last_updated: "+err.Error())
	}

	if len(cells) == 0 {
		r.step("containers", StatusWarn, "", "no cell debug endpoints given: what the cells enforce was not checked")
		r.Verdict, r.Reason = VerdictUnknown, "the policy server "+map[bool]string{true: "allows", false: "does not allow"}[allowed]+" it; no cell was checked"
		return r, nil
	}

	// Where the instances run.
	var srcs, dsts []instance
	reached := 0
	for i, cell := range cells {
		cs, err := cell.Containers(ctx)
		if err != nil {
			r.step("containers", StatusWarn, cell.Name(), "reading the cell's containers: "+err.Error())
			continue
		}
		reached++
		for _, c := range cs.Containers {
			if c.AppGUID == q.Source.GUID {
				srcs = append(srcs, instance{i, c})
			}
			if c.AppGUID == q.Destination.GUID {
				dsts = append(dsts, instance{i, c})
			}
		}
	}
	r.step("containers", map[bool]string{true: StatusInfo, false: StatusWarn}[len(dsts) > 0 && len(srcs) > 0], "",
		fmt.Sprintf("%s: %s; %s: %s (%d of %d cells read)", q.Source, where(srcs, cells), q.Destination, where(dsts, cells), reached, len(cells)))
	if len(dsts) == 0 {
		r.Verdict, r.Reason = VerdictUnknown, fmt.Sprintf("no instance of %s runs on the cells read", q.Destination)
		return r, nil
	}

	enforced := map[int]*Enforced{}
	agent := func(i int) *Enforced {
		if e, ok := enforced[i]; ok {
			return e
		}
		e, err := cells[i].Enforced(ctx)
		if err != nil {
			r.step("agent", StatusWarn, cells[i].Name(), "reading what the agent enforced: "+err.Error())
			enforced[i] = nil
			return nil
		}
		enforced[i] = &e
		r.step("agent", agentStatus(e, stamp), cells[i].Name(), agentDetail(e, stamp))
		return &e
	}

	// Without a tag in the policy server (no policy names the source any
	// more), the tag the cells still mark with is the one to look for.
	if srcTag == "" {
		for _, s := range srcs {
			if e := agent(s.cell); e != nil && e.Marks(s.c.IP) != "" {
				srcTag = e.Marks(s.c.IP)
				r.step("tags", StatusWarn, cells[s.cell].Name(), fmt.Sprintf("%s %s is still marked with tag %s", q.Source, s.c.Addrs(), srcTag))
				break
			}
		}
	}

	// Source cells: is each instance's traffic marked with its tag?
	marked := map[string]bool{} // by instance IP
	for _, s := range srcs {
		e := agent(s.cell)
		if e == nil {
			continue
		}
		name := cells[s.cell].Name()
		got := e.Marks(s.c.IP)
		switch {
		case e.PolicyDisabled:
			marked[s.c.IP] = true
			r.step("source", StatusOK, name, fmt.Sprintf("%s %s: container network policy is disabled on this cell", q.Source, s.c.Addrs()))
		case srcTag != "" && got == srcTag:
			marked[s.c.IP] = true
			r.step("source", StatusOK, name, fmt.Sprintf("%s %s: packets are marked %s (tag %s)", q.Source, s.c.Addrs(), mark(got), got))
		case got == "":
			r.step("source", failIf(allowed), name, fmt.Sprintf("%s %s: packets are not marked (no enforced policy names %s as a source)", q.Source, s.c.Addrs(), q.Source))
		default:
			r.step("source", StatusFail, name, fmt.Sprintf("%s %s: packets are marked with tag %s, the policy server says %s", q.Source, s.c.Addrs(), got, orNone(srcTag)))
		}
		r.step("egress", StatusInfo, name, fmt.Sprintf("%s %s: traffic to the overlay leaves by the VTEP, so ASGs (netout rules, which see only traffic leaving by the underlay interfaces) do not apply", q.Source, s.c.Addrs()))
	}

	// Destination cells: does each instance accept the tag on the port?
	accepts := map[string]bool{}
	for _, d := range dsts {
		e := agent(d.cell)
		if e == nil {
			continue
		}
		name := cells[d.cell].Name()
		if e.PolicyDisabled {
			accepts[d.c.IP] = true
			r.step("destination", StatusOK, name, fmt.Sprintf("%s %s: container network policy is disabled on this cell", q.Destination, d.c.Addrs()))
			continue
		}
		if rule, ok := e.Allows(d.c.IP, srcTag, q.Protocol, q.Port); ok && srcTag != "" {
			accepts[d.c.IP] = true
			r.step("destination", StatusOK, name, fmt.Sprintf("%s %s: accepts tag %s on %s %s (in %s)", q.Destination, d.c.Addrs(), srcTag, rule.Protocol, portRange(rule.StartPort, rule.EndPort), e.Chain))
		} else {
			r.step("destination", failIf(allowed), name, fmt.Sprintf("%s %s: no rule accepts tag %s on %s %d; the container's overlay chain rejects it", q.Destination, d.c.Addrs(), orNone(srcTag), q.Protocol, q.Port))
		}
	}

	// The verdict: over every pair of instances the cells could tell.
	ok, bad := 0, 0
	for _, d := range dsts {
		if enforced[d.cell] == nil {
			continue
		}
		if len(srcs) == 0 {
			if accepts[d.c.IP] {
				ok++
			} else {
				bad++
			}
			continue
		}
		for _, s := range srcs {
			if enforced[s.cell] == nil {
				continue
			}
			if accepts[d.c.IP] && marked[s.c.IP] {
				ok++
			} else {
				bad++
			}
		}
	}
	switch {
	case ok == 0 && bad == 0:
		r.Verdict, r.Reason = VerdictUnknown, "no cell holding an instance could be read"
	case bad == 0 && allowed:
		r.Verdict, r.Reason = VerdictAllowed, "a policy allows it and every cell involved enforces it"
	case bad == 0:
		r.Verdict, r.Reason = VerdictAllowed, "no policy allows it, but the cells still accept it (rules not yet removed)"
	case ok == 0 && !allowed:
		r.Verdict, r.Reason = VerdictDenied, "no policy allows it and no cell accepts it"
	case ok == 0:
		r.Verdict, r.Reason = VerdictPending, "a policy allows it but the cells have not enforced it"
	default:
		r.Verdict, r.Reason = VerdictPartial, fmt.Sprintf("%d instance pair(s) accepted, %d not", ok, bad)
	}
	if len(srcs) == 0 {
		r.Reason += fmt.Sprintf(" (no instance of %s runs on the cells read)", q.Source)
	}
	return r, nil
}

func (r *Result) step(name, status, cell, detail string) {
	r.Steps = append(r.Steps, Step{Step: name, Status: status, Cell: cell, Detail: detail})
}

// tags finds the apps' tags in ps (the policies naming either app) and
// whether one of them allows q; it fills r.Policies.
func tags(ps []policy.Policy, q Query, r *Result) (srcTag, dstTag string, allowed bool) {
	for _, p := range ps {
		for _, e := range []struct{ id, tag string }{{p.Source.ID, p.Source.Tag}, {p.Destination.ID, p.Destination.Tag}} {
			if e.id == q.Source.GUID && srcTag == "" {
				srcTag = e.tag
			}
			if e.id == q.Destination.GUID && dstTag == "" {
				dstTag = e.tag
			}
		}
		if p.Source.ID != q.Source.GUID || p.Destination.ID != q.Destination.GUID {
			continue
		}
		d := p.Destination
		covers := d.Protocol == q.Protocol && d.Ports.Start <= q.Port && q.Port <= d.Ports.End
		allowed = allowed || covers
		r.Policies = append(r.Policies, PolicyRef{Protocol: d.Protocol, StartPort: d.Ports.Start, EndPort: d.Ports.End, Allows: covers})
	}
	sort.Slice(r.Policies, func(i, j int) bool {
		a, b := r.Policies[i], r.Policies[j]
		if a.Protocol != b.Protocol {
			return a.Protocol < b.Protocol
		}
		return a.StartPort < b.StartPort
	})
	return srcTag, dstTag, allowed
}

func agentStatus(e Enforced, stamp int64) string {
	switch {
	case e.LastCycle == nil || e.LastError != "":
		return StatusWarn
	case stamp > 0 && e.PoliciesLastUpdated > 0 && e.PoliciesLastUpdated < stamp:
		return StatusWarn
	}
	return StatusInfo
}

func agentDetail(e Enforced, stamp int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s backend, chain %s", e.Backend, orNone(e.Chain))
	if e.IPv6OverlayNetwork != "" {
		fmt.Fprintf(&b, "; dual stack (IPv6 overlay %s, the same rules for IPv6)", e.IPv6OverlayNetwork)
	}
	if e.LastCycle == nil {
		b.WriteString("; no successful policy cycle yet")
	} else {
		fmt.Fprintf(&b, "; last good cycle %s (%s ago)", e.LastCycle.UTC().Format(time.RFC3339), time.Since(*e.LastCycle).Round(time.Millisecond))
	}
	if e.LastError != "" {
		fmt.Fprintf(&b, "; last cycle failed: %s", e.LastError)
	}
	if stamp > 0 && e.PoliciesLastUpdated > 0 {
		if e.PoliciesLastUpdated < stamp {
			fmt.Fprintf(&b, "; enforced policies of %d, the server is at %d (not yet caught up)", e.PoliciesLastUpdated, stamp)
		} else {
			fmt.Fprintf(&b, "; policies up to date (%d)", e.PoliciesLastUpdated)
		}
	}
	return b.String()
}

// where lists instances as "2 instances (cell 10.0.0.1:8721 10.255.1.2, ...)".
func where(is []instance, cells []Cell) string {
	if len(is) == 0 {
		return "no instance"
	}
	parts := make([]string, len(is))
	for i, in := range is {
		parts[i] = in.c.Addrs() + " on " + cells[in.cell].Name()
	}
	return fmt.Sprintf("%d instance(s): %s", len(is), strings.Join(parts, ", "))
}

func failIf(expected bool) string {
	if expected {
		return StatusFail
	}
	return StatusInfo
}

// mark is a tag as the packet mark the agent sets (0x<tag>, without
// leading zeros).
func mark(tag string) string {
	v, err := strconv.ParseUint(tag, 16, 32)
	if err != nil {
		return tag
	}
	return fmt.Sprintf("0x%x", v)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func portRange(start, end int) string {
	if start == end {
		return strconv.Itoa(start)
	}
	return fmt.Sprintf("%d-%d", start, end)
}

// WriteText writes r as the readable verdict: the question, each step,
// then the verdict and its reason.
func (r Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "trace %s -> %s %s %d\n", r.Source, r.Destination, r.Protocol, r.Port)
	width := 0
	for _, s := range r.Steps {
		width = max(width, len(s.Step))
	}
	for _, s := range r.Steps {
		fmt.Fprintf(&b, "  %-6s %-*s  ", "["+s.Status+"]", width, s.Step)
		if s.Cell != "" {
			fmt.Fprintf(&b, "cell %s: ", s.Cell)
		}
		b.WriteString(s.Detail)
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "verdict: %s (%s)\n", strings.ToUpper(r.Verdict), r.Reason)
	_, err := io.WriteString(w, b.String())
	return err
}
