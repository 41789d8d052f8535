package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/standin/app"
	"github.com/netman-release/netman/src/standin/boshdns"
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
	// From and To name the call when it is not frontend → backend (the
	// ASG steps: the frontend's egress caller → the outside service).
	From, To string
	// Since names what After is measured from; "" is the API's answer.
	Since string
}

// Report is the demo's outcome.
type Report struct {
	// DataPlane is the cells' enforcement_backend ("" in a report of a
	// lab that did not record it).
	DataPlane string
	Cells     []CellState
	Frontend  AppState
	Backend   AppState
	Lookup    Lookup // the backend's name, resolved in the frontend's container
	Steps     []Step
	// Family is "IPv6" for the acts over IPv6 (their Frontend and Backend
	// IP are the apps' IPv6 addresses), "" for IPv4.
	Family string
	// IPv6 is, on a dual-stack lab (--ipv6), the same acts over IPv6,
	// played after these.
	IPv6 *Report
}

// Lookup is a name resolved from inside a container, as the app resolves it.
type Lookup struct {
	Name   string
	Server string // the container's DNS server
	IPs    []string
	Took   time.Duration // the answer's round trip
}

// Sequence is the outcomes in order, e.g. "denied → allowed → denied".
// When the demo has an ASG act (steps with their own caller, From), each
// act is named: "c2c denied → allowed → denied, asg denied → allowed → denied".
func (r Report) Sequence() string {
	type act struct {
		label    string
		verdicts []string
	}
	var acts []act
	named := false
	for i, s := range r.Steps {
		if i == 0 || s.From != r.Steps[i-1].From {
			label := "c2c"
			if s.From != "" {
				label, named = "asg", true
			}
			acts = append(acts, act{label: label})
		}
		a := &acts[len(acts)-1]
		a.verdicts = append(a.verdicts, verdict(s.Allowed))
	}
	out := make([]string, len(acts))
	for i, a := range acts {
		out[i] = strings.Join(a.verdicts, " → ")
		if named {
			out[i] = a.label + " " + out[i]
		}
	}
	seq := strings.Join(out, ", ")
	if r.IPv6 != nil {
		seq += "; over IPv6: " + r.IPv6.Sequence()
	}
	return seq
}

// Unfinished is the sequence of a demo cut short.
func Unfinished(sequence string) string {
	if sequence == "" {
		return "failed before its first outcome"
	}
	return sequence + ", then failed"
}

// Summary is the line `up` ends with once the lab is removed (or, after
// a failed removal, downErr, not wholly), e.g.
// "demo: denied → allowed → denied; lab removed".
func Summary(backend, demo string, downErr error) string {
	if downErr != nil {
		return fmt.Sprintf("demo on %s: %s; lab not fully removed (scripts/lab down removes the rest)", backend, demo)
	}
	return fmt.Sprintf("demo on %s: %s; lab removed", backend, demo)
}

func roundTrip(d time.Duration) string {
	if d < time.Millisecond {
		return fmt.Sprintf("%d µs", d.Microseconds())
	}
	return fmt.Sprintf("%d ms", d.Milliseconds())
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
	if fe.Calls == "" {
		fe.Calls = fmt.Sprintf("%s (cell %d, %s:%d)", be.Name, be.Cell, be.IP, be.Port)
	}
	over := ""
	if r.Family != "" {
		over = " over " + r.Family
	}
	fmt.Fprintf(&b, "cats and dogs%s: %s (cell %d, %s) calls %s every few ms over the overlay\n", over, fe.Name, fe.Cell, fe.IP, fe.Calls)
	if r.DataPlane != "" {
		fmt.Fprintf(&b, "  %-18s%s\n", "data plane", dataPlane(r.DataPlane))
	}
	if l := r.Lookup; l.Name != "" {
		fmt.Fprintf(&b, "  %-18s%s → %s (%s, cell %d) from %s's container:\n", "name lookup", l.Name, strings.Join(l.IPs, " "), be.Name, be.Cell, fe.Name)
		fmt.Fprintf(&b, "  %-18sDNS %s → bosh-dns-adapter → service-discovery-controller, %s\n", "", l.Server, roundTrip(l.Took))
	}
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "  %d. %-15s", i+1, s.Title)
		if s.Action != "" {
			fmt.Fprintf(&b, "%s\n  %-18s", s.Action, "")
		}
		from, to := fe.Name, be.Name
		if s.From != "" {
			from, to = s.From, s.To
		}
		fmt.Fprintf(&b, "%s → %s: %s", from, to, strings.ToUpper(verdict(s.Allowed)))
		if s.Action != "" {
			since := s.Since
			if since == "" {
				since = "the API's answer"
			}
			fmt.Fprintf(&b, " within %d ms of %s", s.After.Milliseconds(), since)
		}
		fmt.Fprintf(&b, "\n  %-18s(%s)\n", "", s.Detail)
	}
	if r.IPv6 == nil {
		fmt.Fprintf(&b, "result: %s\n", r.Sequence())
		return b.String()
	}
	v4 := r
	v4.IPv6 = nil
	fmt.Fprintf(&b, "result: %s\n\n%sresult: %s\n", v4.Sequence(), r.IPv6, r.Sequence())
	return b.String()
}

// Demo acts out the classic policy demo on a lab that is up: the frontend
// is denied the backend; a policy created through the external API lets
// it in; deleting the policy denies it again. Each change is timed from the
// API's answer to the first call the frontend made with the new outcome.
// The ASG act follows when the lab has its outside service. On a
// dual-stack lab (--ipv6) the same acts are then played over IPv6, in
// Report.IPv6.
func Demo(ctx context.Context, st *State, log io.Writer) (Report, error) {
	if log == nil {
		log = io.Discard
	}
	fe, be := st.App("frontend"), st.App("backend")
	if fe == nil || be == nil {
		return Report{}, errors.New("the lab has no frontend and backend apps")
	}
	r, err := demo(ctx, st, *fe, *be, st.Egress, fe.UpAt.Add(100*time.Millisecond), log)
	if err != nil || st.IPv6 == nil {
		return r, err
	}
	r6, err := demoIPv6(ctx, st, *fe, *be, log)
	r.IPv6 = &r6
	return r, err
}

// demoIPv6 plays the acts over IPv6: the frontend's IPv6 caller calls the
// backend's IPv6 address, its IPv6 egress caller the outside service's
// IPv6 address, with the same policy and a security group whose
// destination is that address.
func demoIPv6(ctx context.Context, st *State, fe, be AppState, log io.Writer) (Report, error) {
	v := st.IPv6
	fe.IP, fe.Log, fe.Calls, fe.UpAt, fe.DNSServers = fe.IP6, v.C2C.Log, v.C2C.Calls, v.C2C.UpAt, nil
	be.IP = be.IP6
	r := Report{DataPlane: st.Plan.Backend, Cells: st.Cells, Frontend: fe, Backend: be, Family: "IPv6"}
	fmt.Fprintf(log, "==> demo over IPv6: %s calls %s\n", fe.Name, fe.Calls)
	// A policy is between apps, not addresses: the IPv4 act's policy let
	// the IPv6 calls in too. The IPv6 act starts at their first denial
	// since it was deleted.
	c, err := app.WaitCall(ctx, fe.Log, time.Now(), time.Now().Add(DemoTimeout), func(c app.Call) bool { return !c.Allowed })
	if err != nil {
		return r, fmt.Errorf("over IPv6: %w", err)
	}
	r6, err := demo(ctx, st, fe, be, v.Egress, c.Time, log)
	r6.Family = r.Family
	if err != nil {
		err = fmt.Errorf("over IPv6: %w", err)
	}
	return r6, err
}

// demo acts out the policy act (and, with e, the ASG act) for the
// frontend's caller fe (its Log, Calls and IP) calling be, judging the
// calls from since on.
func demo(ctx context.Context, st *State, fe, be AppState, e *EgressState, since time.Time, log io.Writer) (Report, error) {
	r := Report{DataPlane: st.Plan.Backend, Cells: st.Cells, Frontend: fe, Backend: be}
	api := st.Plan.PolicyAPI(st.Token)
	policies := []policy.Policy{policy.NewPolicy(fe.GUID, be.GUID, "tcp", be.Port, be.Port)}

	// 0. The backend's name resolves in the frontend's container.
	enough := since.Add(time.Second)
	if len(fe.DNSServers) > 0 && be.Route != "" {
		fmt.Fprintf(log, "==> demo: %s resolves %s through %s\n", fe.Name, be.Route, fe.DNSServers[0])
		lookup, err := resolveIn(ctx, fe.NS, fe.DNSServers[0], be.Route, be.IP)
		r.Lookup = lookup
		if err != nil {
			return r, err
		}
		enough = later(enough, time.Now())
	}

	// 1. No policy: a second of calls with both containers up, and at
	// least until the name resolves; of those that resolved it, none
	// through.
	fmt.Fprintf(log, "==> demo: %s calls %s with no policy\n", fe.Name, be.Name)
	deadline := time.Now().Add(DemoTimeout)
	if _, err := app.WaitCall(ctx, fe.Log, enough, deadline, func(app.Call) bool { return true }); err != nil {
		return r, err
	}
	if _, err := app.WaitCall(ctx, fe.Log, since, deadline, app.Call.Resolved); err != nil {
		return r, fmt.Errorf("%s never resolved %s: %w", fe.Name, be.Route, err)
	}
	calls, err := app.ReadCalls(fe.Log)
	if err != nil {
		return r, err
	}
	step := Step{Title: "no policy"}
	for _, c := range calls {
		if c.Time.Before(since) || !c.Resolved() {
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
	err = api.CreatePolicies(ctx, policies)
	answered := time.Now()
	if err != nil {
		return r, fmt.Errorf("create policies: %w", err)
	}
	if err := r.change(ctx, fe.Log, "policy added", fmt.Sprintf("POST /networking/v1/external/policies  %s → %s tcp %d", fe.Name, be.Name, be.Port), true, sent, answered); err != nil {
		return r, err
	}

	// 3. Deleting it shuts the frontend out again.
	fmt.Fprintf(log, "==> demo: POST /networking/v1/external/policies/delete\n")
	sent = time.Now()
	err = api.DeletePolicies(ctx, policies)
	answered = time.Now()
	if err != nil {
		return r, fmt.Errorf("delete policies: %w", err)
	}
	if err := r.change(ctx, fe.Log, "policy removed", "POST /networking/v1/external/policies/delete", false, sent, answered); err != nil {
		return r, err
	}
	if e == nil {
		return r, nil
	}
	asgs, err := newASGChanger(ctx, st)
	if err != nil {
		return r, err
	}
	defer asgs.Close()
	return r, r.asgSteps(ctx, e, fe.Space, asgs, log)
}

// DemoTimeout bounds each change: policy propagation is a long-poll away.
var DemoTimeout = 15 * time.Second

// resolveIn asks server for name from inside the named namespace, as the
// app there does, until the answer is want (registration is a NATS
// message away) or DemoTimeout passes.
func resolveIn(ctx context.Context, nsName, server, name, want string) (Lookup, error) {
	l := Lookup{Name: name, Server: server}
	ns := namespace.Named(nsName)
	deadline := time.Now().Add(DemoTimeout)
	for {
		var ips []netip.Addr
		start := time.Now()
		err := ns.Do(func() error {
			var err error
			ips, err = boshdns.Resolver{Server: server}.LookupA(ctx, name)
			return err
		})
		l.Took, l.IPs = time.Since(start), nil
		for _, ip := range ips {
			l.IPs = append(l.IPs, ip.String())
		}
		if err == nil && slices.Contains(l.IPs, want) {
			// Time a second answer: the first may have waited out the
			// controller's warm-up.
			start = time.Now()
			if ns.Do(func() error { _, err := (boshdns.Resolver{Server: server}).LookupA(ctx, name); return err }) == nil {
				l.Took = time.Since(start)
			}
			return l, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return l, fmt.Errorf("%s does not resolve to %s in %s through %s: %v %v", name, want, nsName, server, l.IPs, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// change waits for the frontend's first call with outcome allowed made
// since the request was sent and records the step.
func (r *Report) change(ctx context.Context, log, title, action string, allowed bool, sent, answered time.Time) error {
	c, err := app.WaitCall(ctx, log, sent, answered.Add(DemoTimeout), func(c app.Call) bool { return c.Allowed == allowed })
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
	if be.Route != "" {
		fmt.Fprintf(&b, "  resolve the backend       ip netns exec %s getent hosts %s\n", fe.NS, be.Route)
		fmt.Fprintf(&b, "  call it by name           ip netns exec %s curl -sS -m 2 http://%s:%d/\n", fe.NS, be.Route, be.Port)
		fmt.Fprintf(&b, "  ask a cell's adapter      ip netns exec %s curl -sS -m 2 'http://127.0.0.1:%d/?name=%s.&type=1'\n", st.Cells[fe.Cell-1].NS, AdapterPort, be.Route)
		certs := filepath.Join(dir, "certs")
		fmt.Fprintf(&b, "  the controller's table    curl -sS -m 2 --cacert %s --cert %s --key %s %s/routes\n",
			filepath.Join(certs, "ca.crt"), filepath.Join(certs, "bosh-dns-adapter", "client.crt"), filepath.Join(certs, "bosh-dns-adapter", "client.key"), st.Plan.DiscoveryURL())
	}
	fmt.Fprintf(&b, "  call the backend's IP     ip netns exec %s curl -sS -m 2 http://%s:%d/\n", fe.NS, be.IP, be.Port)
	fmt.Fprintf(&b, "  the frontend's calls      tail -f %s\n", short(fe.Log))
	if cell := st.Cells[be.Cell-1]; be.HostPort != 0 {
		fmt.Fprintf(&b, "  the backend's host port   curl -sS -m 2 http://%s:%d/   (cell %d's netin mapping)\n", cell.UnderlayIP, be.HostPort, cell.Index)
	}
	fmt.Fprintf(&b, "  a cell's policy rules     %s\n", rulesCommand(st.Plan.Backend, st.Cells[be.Cell-1].NS, "vpa--|overlay--"))
	if e := st.Egress; e != nil {
		ip, port, _ := strings.Cut(e.Service, ":")
		fmt.Fprintf(&b, "  the frontend's egress     tail -f %s\n", short(e.Log))
		fmt.Fprintf(&b, "  call the outside service  ip netns exec %s curl -sS -m 2 %s   (denied without an ASG)\n", fe.NS, e.Calls)
		fmt.Fprintf(&b, "  an ASG in CC              curl -sS -m 2 -X PUT http://%s/security_groups/my-asg -d '{\"Name\":\"my-asg\",\"RunningSpaces\":[\"%s\"],\"Rules\":[{\"protocol\":\"tcp\",\"destination\":\"%s\",\"ports\":\"%s\"}]}'\n", st.Plan.CCAdminAddr(), fe.Space, ip, port)
		fmt.Fprintf(&b, "                            curl -sS -m 2 -X DELETE http://%s/security_groups/my-asg\n", st.Plan.CCAdminAddr())
		fmt.Fprintf(&b, "  the frontend's asg chain  %s\n", rulesCommand(st.Plan.Backend, st.Cells[fe.Cell-1].NS, "asg-"))
	}
	if v := st.IPv6; v != nil {
		fmt.Fprintf(&b, "  over IPv6 (--ipv6)        ip netns exec %s curl -sS -m 2 %s   (with a policy)\n", fe.NS, v.C2C.Calls)
		fmt.Fprintf(&b, "                            tail -f %s\n", short(v.C2C.Log))
		if e := v.Egress; e != nil {
			ip, port, _ := net.SplitHostPort(e.Service)
			fmt.Fprintf(&b, "                            ip netns exec %s curl -sS -m 2 %s   (with an ASG for %s)\n", fe.NS, e.Calls, ip)
			fmt.Fprintf(&b, "                            curl -sS -m 2 -X PUT http://%s/security_groups/my-asg6 -d '{\"Name\":\"my-asg6\",\"RunningSpaces\":[\"%s\"],\"Rules\":[{\"protocol\":\"tcp\",\"destination\":\"%s\",\"ports\":\"%s\"}]}'\n", st.Plan.CCAdminAddr(), fe.Space, ip, port)
		}
	}
	fmt.Fprintf(&b, "  the netman CLI            source %s\n", filepath.Join(dir, "env"))
	fmt.Fprintf(&b, "                            %s list\n", filepath.Join(bins, "netman"))
	fmt.Fprintf(&b, "                            %s add frontend backend --protocol tcp --port %d\n", filepath.Join(bins, "netman"), be.Port)
	fmt.Fprintf(&b, "                            %s remove frontend backend --protocol tcp --port %d\n", filepath.Join(bins, "netman"), be.Port)
	fmt.Fprintf(&b, "                            %s trace frontend backend --protocol tcp --port %d\n", filepath.Join(bins, "netman"), be.Port)
	fmt.Fprintf(&b, "                            %s graph --svg graph.svg; %s ui\n", filepath.Join(bins, "netman"), filepath.Join(bins, "netman"))
	fmt.Fprintf(&b, "  logs                      %s/*.log  %s/cell*/*.log  %s/apps/*.log\n", dir, dir, dir)
	return b.String()
}

// dataPlane says where a backend's rules are, for the report and status.
func dataPlane(backend string) string {
	if backend == BackendNFTables {
		return "nftables (every cell's table inet netman)"
	}
	return "iptables (upstream's chains in every cell's filter and nat tables)"
}

// rulesCommand lists a cell's policy rules (in namespace ns) on backend;
// grep picks the lines of chains named by pattern in iptables mode.
func rulesCommand(backend, ns, pattern string) string {
	if backend == BackendNFTables {
		return fmt.Sprintf("ip netns exec %s nft list table inet netman", ns)
	}
	return fmt.Sprintf("ip netns exec %s iptables-save | grep -E '%s'", ns, pattern)
}
