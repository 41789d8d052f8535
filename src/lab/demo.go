package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Step is one act of the demo: what was done and what the frontend saw.
type Step struct {
	Title   string // "no policy", "policy added", ...
	Action  string // the API call, if any
	Allowed bool
	// After is the time from the API's answer to the frontend's first
	// call with the new outcome (zero for the first step).
	After  time.Duration
	Detail string // the frontend's call line
}

// Report is the demo's outcome.
type Report struct {
	Cells    []CellState
	Frontend AppState
	Backend  AppState
	Steps    []Step
}

// Sequence is the outcomes in order, e.g. "denied → allowed → denied".
func (r Report) Sequence() string {
	out := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		out[i] = verdict(s.Allowed)
	}
	return strings.Join(out, " → ")
}

func verdict(allowed bool) string {
	if allowed {
		return "allowed"
	}
	return "denied"
}

// String is the readable report.
func (r Report) String() string {
	var b strings.Builder
	fe, be := r.Frontend, r.Backend
	fmt.Fprintf(&b, "cats and dogs: %s (cell %d, %s) calls %s (cell %d, %s:%d) every few ms over the overlay\n",
		fe.Name, fe.Cell, fe.IP, be.Name, be.Cell, be.IP, be.Port)
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "  %d. %-15s", i+1, s.Title)
		if s.Action != "" {
			fmt.Fprintf(&b, "%s\n  %-18s", s.Action, "")
		}
		fmt.Fprintf(&b, "%s → %s: %s", fe.Name, be.Name, strings.ToUpper(verdict(s.Allowed)))
		if i > 0 {
			fmt.Fprintf(&b, " within %d ms of the API's answer", s.After.Milliseconds())
		}
		fmt.Fprintf(&b, "\n  %-18s(%s)\n", "", s.Detail)
	}
	fmt.Fprintf(&b, "result: %s\n", r.Sequence())
	return b.String()
}

// Demo acts out the classic policy demo on a lab that is up: the frontend
// is denied the backend; a policy created through the external API lets
// it in; deleting the policy denies it again. Each change is timed from the
// API's answer to the first call the frontend made with the new outcome.
func Demo(ctx context.Context, st *State, log io.Writer) (Report, error) {
	if log == nil {
		log = io.Discard
	}
	fe, be := st.App("frontend"), st.App("backend")
	if fe == nil || be == nil {
		return Report{}, errors.New("the lab has no frontend and backend apps")
	}
	r := Report{Cells: st.Cells, Frontend: *fe, Backend: *be}
	api := API{URL: st.Plan.ExternalURL(), Token: st.Token}
	policy := Policy(fe.GUID, be.GUID, "tcp", be.Port, be.Port)

	// 1. No policy: a second of calls made with both containers up, none through.
	fmt.Fprintf(log, "==> demo: %s calls %s with no policy\n", fe.Name, be.Name)
	since := fe.UpAt.Add(100 * time.Millisecond)
	anyCall := func(Call) bool { return true }
	if _, err := waitCall(ctx, fe.Log, since.Add(time.Second), time.Now().Add(DemoTimeout), anyCall); err != nil {
		return r, err
	}
	calls, err := ReadCalls(fe.Log)
	if err != nil {
		return r, err
	}
	step := Step{Title: "no policy"}
	for _, c := range calls {
		if c.Time.Before(since) {
			continue
		}
		// The first call that got through, else the last denial, preferring
		// a REJECT's "connection refused" to a timeout (the kernel
		// rate-limits the ICMP errors REJECT sends, so most denied SYNs
		// simply go unanswered).
		if !step.Allowed && (c.Allowed || step.Detail == "" || !strings.HasPrefix(c.Detail, "timeout")) {
			step.Allowed, step.Detail = c.Allowed, c.Detail
		}
	}
	r.Steps = append(r.Steps, step)
	if step.Allowed {
		return r, fmt.Errorf("%s reached %s without a policy: %s", fe.Name, be.Name, step.Detail)
	}

	// 2. The policy lets the frontend in.
	fmt.Fprintf(log, "==> demo: POST /networking/v1/external/policies %s → %s tcp %d\n", fe.Name, be.Name, be.Port)
	sent := time.Now()
	answered, err := api.CreatePolicies(policy)
	if err != nil {
		return r, err
	}
	if err := r.change(ctx, fe, "policy added", fmt.Sprintf("POST /networking/v1/external/policies  %s → %s tcp %d", fe.Name, be.Name, be.Port), true, sent, answered); err != nil {
		return r, err
	}

	// 3. Deleting it shuts the frontend out again.
	fmt.Fprintf(log, "==> demo: POST /networking/v1/external/policies/delete\n")
	sent = time.Now()
	answered, err = api.DeletePolicies(policy)
	if err != nil {
		return r, err
	}
	if err := r.change(ctx, fe, "policy removed", "POST /networking/v1/external/policies/delete", false, sent, answered); err != nil {
		return r, err
	}
	return r, nil
}

// DemoTimeout bounds each change: policy propagation is a long-poll away.
var DemoTimeout = 15 * time.Second

// change waits for the frontend's first call with outcome allowed made
// since the request was sent and records the step.
func (r *Report) change(ctx context.Context, fe *AppState, title, action string, allowed bool, sent, answered time.Time) error {
	c, err := waitCall(ctx, fe.Log, sent, answered.Add(DemoTimeout), func(c Call) bool { return c.Allowed == allowed })
	step := Step{Title: title, Action: action, Allowed: allowed, Detail: c.Detail}
	if err != nil {
		step.Allowed = !allowed
		step.Detail = err.Error()
		r.Steps = append(r.Steps, step)
		return fmt.Errorf("%s: the frontend was not %s: %w", title, verdict(allowed), err)
	}
	step.After = max(c.Time.Sub(answered), 0)
	r.Steps = append(r.Steps, step)
	return nil
}

// waitCall polls the caller's log for the first call at or after since
// that matches, until deadline.
func waitCall(ctx context.Context, log string, since, deadline time.Time, match func(Call) bool) (Call, error) {
	for {
		calls, err := ReadCalls(log)
		if err != nil {
			return Call{}, err
		}
		for _, c := range calls {
			if !c.Time.Before(since) && match(c) {
				return c, nil
			}
		}
		if time.Now().After(deadline) {
			last := "no calls at all"
			if len(calls) > 0 {
				last = "last call: " + calls[len(calls)-1].Detail
			}
			return Call{}, fmt.Errorf("no such call in %s by %s (%s)", log, deadline.Format(time.TimeOnly), last)
		}
		select {
		case <-ctx.Done():
			return Call{}, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Tour is what to try on a lab left running; paths are shown relative to
// the working directory when below it.
func (st *State) Tour() string {
	wd, _ := os.Getwd()
	short := func(p string) string {
		if r, err := filepath.Rel(wd, p); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
		return p
	}
	dir, bins := short(st.Dir), short(st.Bins)
	var b strings.Builder
	fe, be := st.App("frontend"), st.App("backend")
	fmt.Fprintf(&b, "The lab is running: %s status shows it, %s down removes it.\n\n", "scripts/lab", "scripts/lab")
	fmt.Fprintf(&b, "  a shell in an app         ip netns exec %s bash\n", fe.NS)
	fmt.Fprintf(&b, "  call the backend          ip netns exec %s curl -s http://%s:%d/\n", fe.NS, be.IP, be.Port)
	fmt.Fprintf(&b, "  the frontend's calls      tail -f %s\n", short(fe.Log))
	if cell := st.Cells[be.Cell-1]; be.HostPort != 0 {
		fmt.Fprintf(&b, "  the backend's host port   curl -s http://%s:%d/   (cell %d's netin mapping)\n", cell.UnderlayIP, be.HostPort, cell.Index)
	}
	fmt.Fprintf(&b, "  a cell's policy rules     ip netns exec %s iptables-save | grep -E 'vpa--|overlay--'\n", st.Cells[be.Cell-1].NS)
	fmt.Fprintf(&b, "  the netman CLI            source %s\n", filepath.Join(dir, "env"))
	fmt.Fprintf(&b, "                            %s list\n", filepath.Join(bins, "netman"))
	fmt.Fprintf(&b, "                            %s add frontend backend --protocol tcp --port %d\n", filepath.Join(bins, "netman"), be.Port)
	fmt.Fprintf(&b, "                            %s remove frontend backend --protocol tcp --port %d\n", filepath.Join(bins, "netman"), be.Port)
	fmt.Fprintf(&b, "  logs                      %s/*.log  %s/cell*/*.log  %s/apps/*.log\n", dir, dir, dir)
	return b.String()
}
