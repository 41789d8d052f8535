package netmancli_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/cli/netmancli"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

// internalAPI is policy-server-internal's policies endpoints over mTLS:
// frontend → backend tcp 8080, tags 0001 and 0002.
func internalAPI(t *testing.T) (*httptest.Server, *mtlstest.Files) {
	files := mtlstest.NewTestFiles(t)
	policies := `{"total_policies":1,"policies":[{"source":{"id":"` + guidFront + `","tag":"0001"},` +
		`"destination":{"id":"` + guidBack + `","tag":"0002","protocol":"tcp","ports":{"start":8080,"end":8080}}}]}`
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/networking/v1/internal/policies":
			_, _ = io.WriteString(w, policies)
		case "/networking/v1/internal/policies_last_updated":
			_, _ = io.WriteString(w, "42")
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = files.ServerConfig(t)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, files
}

// agentDebug is a cell agent's debug server showing containers and what
// it enforced.
func agentDebug(t *testing.T, cs observe.Containers, e observe.Enforced) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case observe.PathContainers:
			_ = json.NewEncoder(w).Encode(cs)
		case observe.PathEnforced:
			_ = json.NewEncoder(w).Encode(e)
		case observe.PathFlows:
			// The cell's flow log: a denied connection to each of its apps.
			f := observe.Flows{File: "iptables.log", Flows: []observe.Flow{}}
			for _, c := range cs.Containers {
				if c.AppGUID == r.URL.Query().Get("app_guid") {
					f.Flows = append(f.Flows, observe.Flow{SourceIP: "10.255.11.2", DestinationApp: c.AppGUID, Protocol: "tcp", Port: 9999, Verdict: observe.VerdictDenied})
				}
			}
			_ = json.NewEncoder(w).Encode(f)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// observeLab is the internal API, two cells (frontend on one, backend on
// the other, the policy enforced on both) and the CLI's environment.
func observeLab(t *testing.T) env {
	api, files := internalAPI(t)
	now := time.Now().Add(-time.Second)
	c1 := agentDebug(t, observe.Containers{Containers: []observe.Container{{Handle: "f1", IP: "10.255.11.2", AppGUID: guidFront, SpaceGUID: "space-1"}}},
		observe.Enforced{Backend: "nftables", Chain: "c2c", LastCycle: &now, PoliciesLastUpdated: 42,
			Sources: []observe.MarkedSource{{IP: "10.255.11.2", AppGUID: guidFront, Tag: "0001"}}})
	c2 := agentDebug(t, observe.Containers{Containers: []observe.Container{{Handle: "b1", IP: "10.255.12.2", AppGUID: guidBack, SpaceGUID: "space-2"}}},
		observe.Enforced{Backend: "nftables", Chain: "c2c", LastCycle: &now, PoliciesLastUpdated: 42,
			Destinations: []observe.Destination{{IP: "10.255.12.2", AppGUID: guidBack, Rules: []observe.AllowRule{
				{SourceAppGUID: guidFront, SourceTag: "0001", Protocol: "tcp", StartPort: 8080, EndPort: 8080}}}}})
	names := writeNames(t, `{"frontend": "`+guidFront+`", "backend": "`+guidBack+`"}`)
	return env{
		"NETMAN_INTERNAL_API": api.URL, "NETMAN_INTERNAL_CA": files.CAFile, "NETMAN_INTERNAL_CERT": files.ClientCert,
		"NETMAN_INTERNAL_KEY": files.ClientKey, "NETMAN_CELLS": c1.URL + "," + strings.TrimPrefix(c2.URL, "http://"),
		"NETMAN_APP_NAMES": names,
	}
}

func TestTrace(t *testing.T) {
	e := observeLab(t)
	o := run(e, "trace", "frontend", "backend", "--protocol", "tcp", "--port", "8080")
	if o.code != 0 || o.stderr != "" {
		t.Fatalf("exit %d: %s", o.code, o.stderr)
	}
	for _, want := range []string{
		"trace frontend -> backend tcp 8080\n",
		"[ok]   policy       a policy allows frontend to reach backend on tcp 8080",
		"frontend 10.255.11.2: packets are marked 0x1 (tag 0001)",
		"backend 10.255.12.2: accepts tag 0001 on tcp 8080 (in c2c)",
		"policies up to date (42)",
		"verdict: ALLOWED",
	} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, o.stdout)
		}
	}
	o = run(e, "trace", "backend", "frontend", "--protocol", "udp", "--port", "53", "--json")
	var r observe.Result
	if err := json.Unmarshal([]byte(o.stdout), &r); err != nil || o.code != 0 {
		t.Fatalf("json: %v, exit %d %s", err, o.code, o.stderr)
	}
	if r.Verdict != observe.VerdictDenied || r.Source.Name != "backend" || r.Destination.GUID != guidFront || len(r.Steps) == 0 {
		t.Errorf("result %+v", r)
	}

	// Without the cells, the policy alone.
	noCells := env{}
	for k, v := range e {
		noCells[k] = v
	}
	delete(noCells, "NETMAN_CELLS")
	if o := run(noCells, "trace", "frontend", "backend", "--protocol", "tcp", "--port", "8080"); o.code != 0 || !strings.Contains(o.stdout, "verdict: UNKNOWN (the policy server allows it; no cell was checked)") {
		t.Errorf("without cells: %d %s %s", o.code, o.stdout, o.stderr)
	}
	// The server's certificate names policy-server.service.cf.internal too.
	e2 := env{}
	for k, v := range e {
		e2[k] = v
	}
	e2["NETMAN_INTERNAL_API"] = strings.Replace(e["NETMAN_INTERNAL_API"], "127.0.0.1", "localhost", 1)
	if o := run(e2, "--server-name", mtls.PolicyServerHost, "trace", "frontend", "backend", "--protocol", "tcp", "--port", "8080"); o.code != 0 {
		t.Errorf("with --server-name: %s", o.stderr)
	}
	if o := run(e2, "--server-name", "wrong.example", "trace", "frontend", "backend", "--protocol", "tcp", "--port", "8080"); o.code != 1 || !strings.Contains(o.stderr, "certificate") {
		t.Errorf("with a wrong --server-name: exit %d %s", o.code, o.stderr)
	}
}

func TestTraceErrors(t *testing.T) {
	e := observeLab(t)
	tests := []struct {
		env  env
		args []string
		want string
	}{
		{e, []string{"trace", "frontend"}, "trace needs SOURCE and DESTINATION, got 1 argument(s)"},
		{e, []string{"trace", "frontend", "backend", "--port", "80"}, "trace needs --protocol tcp|udp and --port N"},
		{e, []string{"trace", "frontend", "backend", "--protocol", "tcp", "--port", "80-90"}, `invalid --port "80-90": want one port, 1 to 65535`},
		{e, []string{"trace", "frontend", "backend", "--protocol", "tcp", "--port", "80", "--svg", "x"}, "trace does not take --svg"},
		{e, []string{"trace", "nope", "backend", "--protocol", "tcp", "--port", "80"}, `unknown app "nope"`},
		{env{}, []string{"trace", guidFront, guidBack, "--protocol", "tcp", "--port", "80"}, "trace needs policy-server-internal: set --internal-api or NETMAN_INTERNAL_API"},
		{env{"NETMAN_INTERNAL_API": "https://127.0.0.1:1"}, []string{"trace", guidFront, guidBack, "--protocol", "tcp", "--port", "80"}, "the internal API needs mTLS credentials"},
		{env{"NETMAN_CELLS": "http://[bad"}, []string{"trace", guidFront, guidBack, "--protocol", "tcp", "--port", "80"}, `invalid cell debug endpoint "http://[bad"`},
		{env{}, []string{"graph"}, "graph needs policies: set --internal-api"},
		{env{}, []string{"graph", "extra"}, `graph takes no arguments, got "extra"`},
	}
	for _, tt := range tests {
		o := run(tt.env, tt.args...)
		if o.code != 1 || !strings.Contains(o.stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q, want %q", tt.args, o.code, o.stderr, tt.want)
		}
	}
}

func TestGraph(t *testing.T) {
	e := observeLab(t)
	o := run(e, "graph")
	want := `"` + guidFront + `" -> "` + guidBack + `" [label="tcp 8080"];`
	if o.code != 0 || !strings.Contains(o.stdout, want) || !strings.Contains(o.stdout, `[label="frontend\n1 instance"]`) {
		t.Fatalf("graph: exit %d %s\n%s", o.code, o.stderr, o.stdout)
	}
	dir := t.TempDir()
	dot, svg := filepath.Join(dir, "g.dot"), filepath.Join(dir, "g.svg")
	o = run(e, "graph", "--space", "space-2", "--dot", dot, "--svg", svg)
	if o.code != 0 || o.stdout != fmt.Sprintf("wrote %s (2 apps, 1 connections)\nwrote %s (2 apps, 1 connections)\n", dot, svg) {
		t.Fatalf("graph to files: exit %d %q %s", o.code, o.stdout, o.stderr)
	}
	for _, f := range []struct{ path, want string }{{dot, "digraph netman {"}, {svg, `<svg xmlns="http://www.w3.org/2000/svg"`}} {
		b, err := os.ReadFile(f.path)
		if err != nil || !strings.HasPrefix(string(b), f.want) {
			t.Errorf("%s: %v %.80s", f.path, err, b)
		}
	}
	// An app filter by name; the JSON form.
	o = run(e, "graph", "--app", "backend", "--json")
	var g observe.Graph
	if err := json.Unmarshal([]byte(o.stdout), &g); err != nil || len(g.Edges) != 1 || len(g.Apps) != 2 {
		t.Errorf("graph --app backend --json: %v %s", err, o.stdout)
	}
	if o := run(e, "graph", "--org", "org-none"); o.code != 0 || strings.Contains(o.stdout, "->") {
		t.Errorf("graph of an org without apps: %s", o.stdout)
	}
}

func TestUI(t *testing.T) {
	e := observeLab(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr maintest.Buffer
	done := make(chan int, 1)
	go func() {
		done <- netmancli.Main(ctx, []string{"ui", "--listen", "127.0.0.1:0"}, func(k string) string { return e[k] }, &stdout, &stderr)
	}()
	var url string
	deadline := time.Now().Add(10 * time.Second)
	for url == "" && time.Now().Before(deadline) {
		line, _ := bufio.NewReader(strings.NewReader(stdout.String())).ReadString('\n')
		if rest, ok := strings.CutPrefix(line, "serving "); ok {
			url, _, _ = strings.Cut(rest, " ")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if url == "" {
		cancel()
		t.Fatalf("no serving line: %q %q", stdout.String(), stderr.String())
	}
	for path, want := range map[string]string{
		"":                     "<title>netman: the policy graph</title>",
		"graph.svg":            `data-name="frontend"`,
		"api/apps/" + guidBack: `"inbound":[{"source":"` + guidFront,
		// The cells' flow logs, through their agents.
		"api/apps/" + guidBack + "?flows": `"denied":[{"time":"0001-01-01T00:00:00Z","source_app":"","destination_app":"` + guidBack + `","source_ip":"10.255.11.2"`,
		"api/trace?source=" + guidFront + "&destination=" + guidBack + "&protocol=tcp&port=8080": `"verdict":"allowed"`,
	} {
		resp, err := http.Get(url + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET /%s: %d, want %q in\n%.400s", path, resp.StatusCode, want, b)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("ui exited %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ui did not stop")
	}
}
