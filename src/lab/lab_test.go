package lab

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/cli/netmancli"
	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// TestLabUpDemoDown is `scripts/lab up` end to end on each backend: three
// cells on iptables (the third app on the third; issue 12's underlay
// bridge failed at three), two on nftables (`--backend nftables`), on
// SQLite; the backend's name resolves in the frontend's container, the
// demo's report says denied → allowed → denied for calls by name, and down
// leaves no namespace, link, process, mount or file of the lab's behind.
func TestLabUpDemoDown(t *testing.T) {
	netnstest.RequireRoot(t)
	bins := t.TempDir()
	if err := Build(bins, Binaries...); err != nil {
		t.Fatal(err)
	}
	// One after the other: both labs' agents read every namespace's
	// kernel log, and the machine has two cores.
	t.Run(BackendIPTables, func(t *testing.T) { labUpDemoDown(t, bins, BackendIPTables, 3) })
	t.Run(BackendNFTables, func(t *testing.T) { labUpDemoDown(t, bins, BackendNFTables, 2) })
}

func labUpDemoDown(t *testing.T, bins, backend string, cells int) {
	// Hold nf_log_all_netns through netnstest's cross-process share
	// first: go test runs packages in parallel and the sysctl is
	// host-wide, so a test of another package turning it on while this
	// lab's down restores the value its up found would lose its LOG lines
	// (and this lab's flow log the DENY_ lines). Registered before
	// downOnCleanup, the share is given up after down.
	netnstest.LogAllNetns(t)
	dir := filepath.Join(t.TempDir(), "lab")
	o := testOptions(t, dir, bins, backend, cells)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	downOnCleanup(t, dir)

	logAllNetns, err := os.ReadFile(NFLogAllNetns)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	if b, err := os.ReadFile(NFLogAllNetns); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Errorf("nf_log_all_netns during the lab: %q %v, want 1", b, err)
	}
	if err := Status(dir, testWriter{t}); err != nil {
		t.Errorf("status: %v", err)
	}
	report, err := Demo(ctx, st, testWriter{t})
	t.Logf("report:\n%s", report)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	if report.DataPlane != backend || !strings.Contains(report.String(), backend) {
		t.Errorf("report's data plane %q, want %s:\n%s", report.DataPlane, backend, report)
	}
	// The cells' agents and wrappers really run that data plane.
	for _, c := range st.Cells {
		out, err := namespace.Run("ip", "netns", "exec", c.NS, "nft", "list", "tables")
		if has := strings.Contains(out, "table inet netman"); err != nil || has != (backend == BackendNFTables) {
			t.Errorf("cell %d on %s: nft list tables: %v\n%s", c.Index, backend, err, out)
		}
	}
	// The policy act, then the ASG act (the frontend's egress caller).
	const want = "c2c denied → allowed → denied, asg denied → allowed → denied"
	if got := report.Sequence(); got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	if !strings.Contains(report.String(), "result: "+want) {
		t.Errorf("report lacks its result line:\n%s", report)
	}
	for i, title := range []string{"no ASG", "ASG bound", "ASG removed"} {
		s := report.Steps[3+i]
		if s.Title != title || s.From != "frontend" || !strings.HasPrefix(s.To, "outside ") {
			t.Errorf("step %d = %+v, want %q from the frontend to the outside service", 4+i, s, title)
		}
		if i > 0 && (s.After <= 0 || s.After > DemoTimeout || s.Since != "Cloud Controller's answer") {
			t.Errorf("step %q: after %v since %q", title, s.After, s.Since)
		}
		// Cloud Controller → syncer (every second) → store → agents.
		if i > 0 && s.After > 2*time.Second {
			t.Errorf("step %q took %v from Cloud Controller to the app", title, s.After)
		}
	}
	if fe, be := report.Frontend, report.Backend; fe.Cell != 1 || be.Cell != 2 || fe.IP == "" || be.IP == "" {
		t.Errorf("frontend %+v, backend %+v: want cell 1 and cell 2 with addresses", fe, be)
	}
	if be := report.Backend; be.HostPort < 61000 || be.HostPort >= 66000 {
		t.Errorf("backend host port %d: want one from garden's 61000-65999", be.HostPort)
	}
	// By name: resolved in the frontend's container, and the denied calls
	// before the policy had the backend's address.
	fe, be := report.Frontend, report.Backend
	if l := report.Lookup; l.Name != "backend.apps.internal" || len(l.IPs) != 1 || l.IPs[0] != be.IP || l.Server != DNSServer {
		t.Errorf("lookup %+v: want backend.apps.internal → %s through %s", l, be.IP, DNSServer)
	}
	if want := "backend.apps.internal → " + be.IP; !strings.Contains(report.String(), want) {
		t.Errorf("report lacks %q", want)
	}
	if fe.Calls != "http://backend.apps.internal:8080/" || len(report.Steps) == 0 || !strings.Contains(report.Steps[0].Detail, be.IP) {
		t.Errorf("frontend calls %q; first step %+v: want denied calls to %s by name", fe.Calls, report.Steps, be.IP)
	}
	// The container's resolv.conf (dns_servers) serves any resolver in it.
	if out, err := namespace.Run("ip", "netns", "exec", fe.NS, "getent", "hosts", "0.backend.apps.internal"); err != nil || !strings.Contains(out, be.IP) {
		t.Errorf("getent hosts 0.backend.apps.internal in %s: %v %q, want %s", fe.NS, err, out, be.IP)
	}
	if out, err := namespace.Run("ip", "netns", "exec", fe.NS, "getent", "hosts", "nosuch.apps.internal"); err == nil {
		t.Errorf("getent hosts nosuch.apps.internal: %q, want not found", out)
	}
	env, err := os.ReadFile(filepath.Join(dir, "env"))
	if err != nil || !strings.Contains(string(env), "NETMAN_TOKEN="+st.Token) {
		t.Errorf("env file: %v\n%s", err, env)
	}
	// Issue 17's features on the demo's connections: the backend's agent
	// counted the allowed and the denied ones (enable_app_metrics), and
	// the policy-server's /ui/ page shows the policy `netman add` makes.
	appMetricsShowAllowedAndDenied(t, st)
	flowLogsShowAllowedAndDenied(t, st)
	uiShowsFlows(t, st)
	traceThroughEnvFile(t, ctx, string(env), report.Backend.Port, func() { uiShowsPolicy(t, st, report.Backend.Port) })

	procs := st.Procs()
	var made []string // namespaces and links
	for _, r := range st.Undo {
		if r.Kind == KindNetns || r.Kind == KindLink {
			made = append(made, r.Name)
		}
	}
	if err := Down(ctx, dir, testWriter{t}); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, p := range procs {
		if !p.Exited() {
			t.Errorf("%s (pid %d) still runs", p.Name, p.PID)
		}
	}
	for _, name := range made {
		if namespace.Exists(name) || namespace.LinkExists(name) {
			t.Errorf("%s still exists", name)
		}
	}
	if out, _ := namespace.Run("ip", "-o", "link", "show"); strings.Contains(out, o.Names) {
		t.Errorf("links left:\n%s", out)
	}
	if out, _ := namespace.Run("ip", "netns", "list"); strings.Contains(out, o.Names) {
		t.Errorf("namespaces left:\n%s", out)
	}
	if mounts, err := MountsUnder(dir); err != nil || len(mounts) > 0 {
		t.Errorf("mounts left: %v %v", mounts, err)
	}
	if left := processesMentioning(t, dir); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still there: %v", dir, err)
	}
	for _, a := range st.Apps {
		if _, err := os.Stat(filepath.Join(EtcNetns, a.NS)); !os.IsNotExist(err) {
			t.Errorf("%s still there: %v", filepath.Join(EtcNetns, a.NS), err)
		}
	}
	if b, err := os.ReadFile(NFLogAllNetns); err != nil || string(b) != string(logAllNetns) {
		t.Errorf("nf_log_all_netns after down: %q %v, want %q as before up", b, err, logAllNetns)
	}
	if err := Down(ctx, dir, nil); err != nil {
		t.Errorf("second down: %v", err)
	}
}

// testOptions are a test lab's options: its own names, an underlay and
// free ports, so that it runs beside other labs and e2e tests.
func testOptions(t *testing.T, dir, bins, backend string, cells int) Options {
	return Options{
		Dir: dir, Bins: bins, Cells: cells, Apps: cells, DB: DBSQLite, Backend: backend,
		Names: netnstest.UniqueName("nml"),
		// celltest takes 10.244.100-199: stay clear of concurrent e2e tests.
		Underlay: fmt.Sprintf("10.244.%d.", 200+rand.IntN(50)),
		Ports: Ports{
			ControllerAPI: ports.Free(t, "127.0.0.1"), ControllerHealth: ports.Free(t, "127.0.0.1"), ControllerDebug: ports.Free(t, "127.0.0.1"),
			External: ports.Free(t, "127.0.0.1"), ExternalDebug: ports.Free(t, "127.0.0.1"),
			Internal: ports.Free(t, "127.0.0.1"), InternalHealth: ports.Free(t, "127.0.0.1"), InternalDebug: ports.Free(t, "127.0.0.1"),
			Discovery: ports.Free(t, "127.0.0.1"), DiscoveryLogLevel: ports.Free(t, "127.0.0.1"), NATS: ports.Free(t, "127.0.0.1"),
			CC: ports.Free(t, "127.0.0.1"), CCInternal: ports.Free(t, "127.0.0.1"), CCAdmin: ports.Free(t, "127.0.0.1"),
		},
		Log: testWriter{t},
	}
}

// downOnCleanup removes the lab in dir when the test ends, whatever happened.
func downOnCleanup(t *testing.T, dir string) {
	t.Cleanup(func() {
		if err := Down(context.Background(), dir, testWriter{t}); err != nil {
			t.Errorf("cleanup down: %v", err)
		}
	})
}

// processesMentioning lists the processes whose command line names dir.
func processesMentioning(t *testing.T, dir string) []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), dir) {
			out = append(out, e.Name()+": "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	return out
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// traceThroughEnvFile runs `netman trace` with the lab's env file, as an
// operator who sourced it would: the demo ended denied, a policy added
// with `netman add` makes it allowed once the agents enforced it, its
// removal denied again.
func traceThroughEnvFile(t *testing.T, ctx context.Context, envFile string, port int, whileAllowed func()) {
	t.Helper()
	env := map[string]string{}
	for _, line := range strings.Split(envFile, "\n") {
		if k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "="); ok && !strings.HasPrefix(line, "#") {
			env[k] = v
		}
	}
	netman := func(args ...string) (string, error) {
		var stdout, stderr strings.Builder
		if code := netmancli.Main(ctx, args, func(k string) string { return env[k] }, &stdout, &stderr); code != 0 {
			return stdout.String(), fmt.Errorf("netman %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String(), nil
	}
	p := strconv.Itoa(port)
	verdict := func() (string, string) {
		out, err := netman("trace", "frontend", "backend", "--protocol", "tcp", "--port", p, "--json")
		if err != nil {
			t.Fatal(err)
		}
		var r observe.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("trace --json: %v\n%s", err, out)
		}
		return r.Verdict, out
	}
	waitVerdict := func(want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got, out := verdict()
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("trace: %s, want %s:\n%s", got, want, out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitVerdict(observe.VerdictDenied)
	if _, err := netman("add", "frontend", "backend", "--protocol", "tcp", "--port", p); err != nil {
		t.Fatal(err)
	}
	waitVerdict(observe.VerdictAllowed)
	whileAllowed()
	if out, err := netman("trace", "frontend", "backend", "--protocol", "tcp", "--port", p); err != nil || !strings.Contains(out, "verdict: ALLOWED") {
		t.Errorf("trace text: %v\n%s", err, out)
	}
	if out, err := netman("graph"); err != nil || !strings.Contains(out, "[label=\"tcp "+p+"\"]") {
		t.Errorf("graph: %v\n%s", err, out)
	}
	if _, err := netman("remove", "frontend", "backend", "--protocol", "tcp", "--port", p); err != nil {
		t.Fatal(err)
	}
	waitVerdict(observe.VerdictDenied)
}

// eventually retries f until it returns nil or wait has passed.
func eventually(t *testing.T, wait time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get reads url from the root namespace.
func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// appMetricsShowAllowedAndDenied waits until the backend's cell's agent
// has counted inbound connections to the backend both allowed (the demo's
// allowed act) and denied (its denied acts).
func appMetricsShowAllowedAndDenied(t *testing.T, st *State) {
	t.Helper()
	be := st.App("backend")
	url := st.Plan.Cell(be.Cell).AgentDebugURL() + "/metrics"
	for _, verdict := range []string{"allowed", "denied"} {
		want := []string{`app_guid="` + be.GUID + `"`, `direction="in"`, `verdict="` + verdict + `"`}
		eventually(t, 15*time.Second, func() error {
			body, err := get(url)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(body, "\n") {
				labels, value, _ := strings.Cut(line, "} ")
				if !strings.HasPrefix(labels, "netman_app_network_connections_total{") {
					continue
				}
				match := true
				for _, w := range want {
					match = match && strings.Contains(labels, w)
				}
				if n, err := strconv.ParseFloat(value, 64); match && err == nil && n >= 1 {
					return nil
				}
			}
			return fmt.Errorf("no netman_app_network_connections_total{%s} of at least 1 at %s:\n%s", strings.Join(want, ","), url, body)
		})
	}
}

// uiShowsPolicy reads the policy-server debug server's /ui/ page and its
// JSON API (what `netman ui` serves too): the graph has the frontend →
// backend policy on port, and the backend's panel lists it inbound.
func uiShowsPolicy(t *testing.T, st *State, port int) {
	t.Helper()
	fe, be := st.App("frontend"), st.App("backend")
	base := fmt.Sprintf("http://127.0.0.1:%d/ui", st.Plan.Ports.ExternalDebug)
	if page, err := get(base + "/"); err != nil || !strings.Contains(page, "<html") {
		t.Errorf("/ui/: %v\n%.200s", err, page)
	}
	edge := observe.Edge{Source: fe.GUID, Destination: be.GUID, Ports: []string{"tcp " + strconv.Itoa(port)}}
	eventually(t, 10*time.Second, func() error {
		body, err := get(base + "/api/graph")
		if err != nil {
			return err
		}
		var g observe.Graph
		if err := json.Unmarshal([]byte(body), &g); err != nil {
			return fmt.Errorf("/ui/api/graph: %v\n%s", err, body)
		}
		for _, e := range g.Edges {
			if e.Source == edge.Source && e.Destination == edge.Destination && strings.Join(e.Ports, ",") == strings.Join(edge.Ports, ",") {
				return nil
			}
		}
		return fmt.Errorf("/ui/api/graph lacks %+v:\n%s", edge, body)
	})
	body, err := get(base + "/api/apps/" + be.GUID)
	var d observe.AppDetail
	if err == nil {
		err = json.Unmarshal([]byte(body), &d)
	}
	if err != nil || d.App.GUID != be.GUID || len(d.Inbound) != 1 || d.Inbound[0].Source != fe.GUID {
		t.Errorf("/ui/api/apps/%s: %v, want the frontend's policy inbound:\n%s", be.GUID, err, body)
	}
}

// TestLabUpIPv6 is `scripts/lab up --ipv6` on each backend, two
// dual-stack cells: every app gets its IPv6 address (derived from its IPv4
// one, as Garden's garden.network.container-ipv6); the underlay gets its
// IPv6 /64 (the bridge and each cell's ul0, the cells' IPv6 default route
// via the bridge); the demo plays its acts over IPv4 and then over IPv6:
// the frontend's calls to the backend's IPv6 address denied, allowed once
// the policy is created through the external API, denied once it is
// deleted; its IPv6 egress to the outside service on the bridge's IPv6
// address denied, allowed once Cloud Controller binds a security group
// with that IPv6 destination, denied once it is deleted — each change
// within DemoTimeout, timed. Down leaves no IPv6 address of the lab's and
// puts back the sysctls it set.
func TestLabUpIPv6(t *testing.T) {
	netnstest.RequireRoot(t)
	bins := t.TempDir()
	if err := Build(bins, Binaries...); err != nil {
		t.Fatal(err)
	}
	t.Run(BackendIPTables, func(t *testing.T) { labUpIPv6(t, bins, BackendIPTables) })
	t.Run(BackendNFTables, func(t *testing.T) { labUpIPv6(t, bins, BackendNFTables) })
}

func labUpIPv6(t *testing.T, bins, backend string) {
	// Hold nf_log_all_netns through netnstest's cross-process share
	// first: go test runs packages in parallel and the sysctl is
	// host-wide, so a test of another package turning it on while this
	// lab's down restores the value its up found would lose its LOG lines
	// (and this lab's flow log the DENY_ lines). Registered before
	// downOnCleanup, the share is given up after down.
	netnstest.LogAllNetns(t)
	dir := filepath.Join(t.TempDir(), "lab")
	o := testOptions(t, dir, bins, backend, 2)
	o.IPv6 = true
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	downOnCleanup(t, dir)
	// The root namespace's IPv6 settings, to compare after down: --ipv6
	// sets none of them (only the bridge's own disable_ipv6, which goes
	// with the bridge). nf_log_all_netns, which every lab sets and down
	// restores, is TestLabUpDemoDown's.
	rootSysctls := []string{"/proc/sys/net/ipv6/conf/all/forwarding", "/proc/sys/net/ipv6/conf/default/disable_ipv6", "/proc/sys/net/ipv6/conf/all/disable_ipv6"}
	before := map[string]string{}
	for _, f := range rootSysctls {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		before[f] = string(b)
	}
	st, err := Up(ctx, o)
	if err != nil {
		t.Fatalf("up: %v", err)
	}
	v6 := overlay6.MustParse(st.Plan.IPv6)
	for _, a := range st.Apps {
		if want := v6.Addr(netip.MustParseAddr(a.IP)).String(); a.IP6 != want {
			t.Errorf("app %s (%s) has IPv6 %q, want %s", a.Name, a.IP, a.IP6, want)
		}
	}
	// The IPv6 underlay: the bridge's address, each cell's, its route.
	u6 := Underlay6Prefix(o.Underlay)
	if st.Plan.Underlay6 != u6 || st.Plan.RootIP6() != u6+"1" {
		t.Errorf("plan's IPv6 underlay %q (root %q), want %s/64", st.Plan.Underlay6, st.Plan.RootIP6(), u6)
	}
	if out, err := namespace.Run("ip", "-6", "-o", "addr", "show", "dev", st.Bridge); err != nil || !strings.Contains(out, "inet6 "+st.Plan.RootIP6()+"/64") {
		t.Errorf("bridge %s: %v\n%s", st.Bridge, err, out)
	}
	for _, c := range st.Cells {
		addr, _ := namespace.Run("ip", "netns", "exec", c.NS, "ip", "-6", "-o", "addr", "show", "dev", "ul0")
		route, _ := namespace.Run("ip", "netns", "exec", c.NS, "ip", "-6", "route", "show", "default")
		if c.UnderlayIP6 == "" || !strings.Contains(addr, "inet6 "+c.UnderlayIP6+"/64") || !strings.Contains(route, "via "+st.Plan.RootIP6()+" dev ul0") {
			t.Errorf("cell %d: IPv6 underlay %q; ul0:\n%s\nroute:\n%s", c.Index, c.UnderlayIP6, addr, route)
		}
		var wrapper Conflist
		b, err := os.ReadFile(filepath.Join(st.Plan.Cell(c.Index).CNIConfigDir(), ConflistName))
		if err == nil {
			err = json.Unmarshal(b, &wrapper)
		}
		if err != nil || wrapper.Plugins[0].InstanceAddressIPv6 != c.UnderlayIP6 {
			t.Errorf("cell %d's conflist: %v, want instance_address_ipv6 %s:\n%s", c.Index, err, c.UnderlayIP6, b)
		}
	}
	if st.IPv6 == nil || st.IPv6.Egress == nil || st.IPv6.Egress.Service != "["+st.Plan.RootIP6()+"]:"+strconv.Itoa(EgressPort) {
		t.Fatalf("IPv6 callers %+v: want the backend's IPv6 address and the outside service on [%s]:%d", st.IPv6, st.Plan.RootIP6(), EgressPort)
	}

	report, err := Demo(ctx, st, testWriter{t})
	t.Logf("report:\n%s", report)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	const acts = "c2c denied → allowed → denied, asg denied → allowed → denied"
	if got, want := report.Sequence(), acts+"; over IPv6: "+acts; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	r6 := report.IPv6
	if r6 == nil || r6.Family != "IPv6" || len(r6.Steps) != 6 {
		t.Fatalf("IPv6 report %+v: want six steps over IPv6", r6)
	}
	fe, be := st.App("frontend"), st.App("backend")
	if r6.Frontend.IP != fe.IP6 || r6.Backend.IP != be.IP6 || !strings.Contains(r6.Steps[0].Detail, be.IP6) {
		t.Errorf("IPv6 acts from %s to %s (first call %q): want %s to %s", r6.Frontend.IP, r6.Backend.IP, r6.Steps[0].Detail, fe.IP6, be.IP6)
	}
	for i, s := range r6.Steps {
		if s.Action == "" {
			t.Logf("over IPv6 on %s: %d. %s: %s (%s)", backend, i+1, s.Title, verdict(s.Allowed), s.Detail)
			continue
		}
		t.Logf("over IPv6 on %s: %d. %s: %s within %v of %s (%s)", backend, i+1, s.Title, verdict(s.Allowed), s.After, cmp.Or(s.Since, "the API's answer"), s.Detail)
		if s.After <= 0 || s.After > DemoTimeout {
			t.Errorf("over IPv6: step %q after %v, want within %v", s.Title, s.After, DemoTimeout)
		}
		// Cloud Controller → syncer (every second) → store → agents.
		if s.From != "" && s.After > 2*time.Second {
			t.Errorf("over IPv6: step %q took %v from Cloud Controller to the app", s.Title, s.After)
		}
	}
	if s := r6.Steps[3]; s.From != "frontend" || s.To != "outside "+st.IPv6.Egress.Service {
		t.Errorf("IPv6 ASG step %+v: want the frontend to the outside service on %s", s, st.IPv6.Egress.Service)
	}
	if !strings.Contains(report.String(), "cats and dogs over IPv6: frontend (cell 1, "+fe.IP6+")") {
		t.Errorf("report lacks its IPv6 acts:\n%s", report)
	}

	var made []string // namespaces and links
	for _, r := range st.Undo {
		if r.Kind == KindNetns || r.Kind == KindLink {
			made = append(made, r.Name)
		}
	}
	if err := Down(ctx, dir, testWriter{t}); err != nil {
		t.Fatalf("down: %v", err)
	}
	for _, name := range made {
		if namespace.Exists(name) || namespace.LinkExists(name) {
			t.Errorf("%s still exists", name)
		}
	}
	if out, _ := namespace.Run("ip", "-6", "-o", "addr", "show"); strings.Contains(out, u6) {
		t.Errorf("IPv6 underlay addresses left:\n%s", out)
	}
	if out, _ := namespace.Run("ip", "-6", "route", "show"); strings.Contains(out, u6) {
		t.Errorf("IPv6 underlay routes left:\n%s", out)
	}
	for _, f := range rootSysctls {
		if b, err := os.ReadFile(f); err != nil || string(b) != before[f] {
			t.Errorf("%s after down: %q %v, want %q as before up", f, b, err, before[f])
		}
	}
	if left := processesMentioning(t, dir); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
}

// httpExchangeBytes is the least a backend's answer to one of the
// frontend's calls brings back in IP bytes: handshake and close (about
// 112) plus the HTTP response ("200 hello from backend (ip:port)" and
// its headers). A connection closed before its request carries less.
const httpExchangeBytes = 300

// flowLogsShowAllowedAndDenied waits until the cells' iptables-logger
// flow logs hold the demo's connections from the frontend to the backend:
// on the frontend's cell a flow-allowed record naming the frontend as
// source, on the backend's cell a flow-allowed record naming the backend
// as destination (both with bytes each way, the answer's included, from conntrack's DESTROY
// events), and on the backend's cell a flow-denied record naming the
// backend (from its DENY_C2C_ line).
func flowLogsShowAllowedAndDenied(t *testing.T, st *State) {
	t.Helper()
	fe, be := st.App("frontend"), st.App("backend")
	checks := []struct {
		cell    int
		verdict string
		match   func(f observe.Flow) bool
	}{
		{fe.Cell, observe.VerdictAllowed, func(f observe.Flow) bool { return f.SourceApp == fe.GUID }},
		{be.Cell, observe.VerdictAllowed, func(f observe.Flow) bool { return f.DestinationApp == be.GUID }},
		{be.Cell, observe.VerdictDenied, func(f observe.Flow) bool { return f.DestinationApp == be.GUID }},
	}
	for _, c := range checks {
		log := st.Plan.Cell(c.cell).IPTablesLog()
		eventually(t, 90*time.Second, func() error {
			b, err := os.ReadFile(log)
			if err != nil {
				return err
			}
			for _, line := range strings.Split(string(b), "\n") {
				f, ok := observe.ParseFlowRecord([]byte(line))
				if !ok || f.Verdict != c.verdict || !c.match(f) || f.SourceIP != fe.IP || f.DestinationIP != be.IP || f.Protocol != "tcp" || f.Port != be.Port || f.BytesOut == 0 {
					continue
				}
				if c.verdict == observe.VerdictDenied || f.BytesIn >= httpExchangeBytes {
					t.Logf("cell %d's flow log %s:\n%s", c.cell, log, line)
					return nil
				}
			}
			return fmt.Errorf("no flow-%s record from the frontend (%s) to the backend (%s:%d) in cell %d's %s:\n%s", c.verdict, fe.IP, be.IP, be.Port, c.cell, log, tail(string(b), 10))
		})
	}
}

// uiShowsFlows reads the backend's panel from policy-server's /ui/ API
// (ui_cells: the lab's agents, which serve their cell's flow log and
// per-app metrics): its flows hold an allowed connection from the
// frontend with bytes each way, its denied connections one from the
// frontend, and its metrics inbound connections allowed and denied.
func uiShowsFlows(t *testing.T, st *State) {
	t.Helper()
	fe, be := st.App("frontend"), st.App("backend")
	url := fmt.Sprintf("http://127.0.0.1:%d/ui/api/apps/%s", st.Plan.Ports.ExternalDebug, be.GUID)
	eventually(t, 30*time.Second, func() error {
		body, err := get(url)
		if err != nil {
			return err
		}
		var d observe.AppDetail
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			return fmt.Errorf("%s: %v\n%s", url, err, body)
		}
		fromFrontend := func(f observe.Flow) bool {
			return f.SourceIP == fe.IP && f.DestinationApp == be.GUID && f.Protocol == "tcp" && f.Port == be.Port
		}
		var allowed, denied *observe.Flow
		var counters map[string]float64
		for _, a := range d.Activity {
			if a.Source == observe.AppMetricsSource {
				counters = a.Counters
			}
			for i, f := range a.Flows {
				if a.Source == observe.FlowLogSource && f.Verdict == observe.VerdictAllowed && fromFrontend(f) && f.BytesOut > 0 && f.BytesIn >= httpExchangeBytes {
					allowed = &a.Flows[i]
				}
			}
		}
		for i, f := range d.Denied {
			if fromFrontend(f) {
				denied = &d.Denied[i]
			}
		}
		if allowed == nil || denied == nil || counters["connections in allowed"] < 1 || counters["connections in denied"] < 1 {
			return fmt.Errorf("%s: want an allowed flow and a denied connection from the frontend (%s), and the agent's connections in allowed and denied:\n%s", url, fe.IP, body)
		}
		t.Logf("/ui/ backend panel: per-app metrics %v", counters)
		t.Logf("/ui/ backend panel: allowed %+v", *allowed)
		t.Logf("/ui/ backend panel: denied %+v", *denied)
		return nil
	})
}
