package netmancli_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/cli/netmancli"
	"github.com/netman-release/netman/src/policy"
)

const (
	guidFront = "11111111-1111-4111-8111-111111111111"
	guidBack  = "22222222-2222-4222-8222-222222222222"
	guidOther = "33333333-3333-4333-8333-333333333333"
)

// fakeServer is a policy server's v1 external API: a token, stored
// policies, bodies validated by the server's own mapper.
type fakeServer struct {
	srv      *httptest.Server
	token    string
	mu       sync.Mutex
	policies []policy.Policy
	requests []string
	status   int // when set, every request answers it with message
	message  string
}

func newFakeServer(t *testing.T) *fakeServer {
	f := &fakeServer{token: "s3cret"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	line := r.Method + " " + r.URL.RequestURI()
	if len(body) > 0 {
		line += " " + string(body)
	}
	f.requests = append(f.requests, line)
	answer := func(status int, body string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		answer(401, `{"error": "failed to verify token with uaa"}`)
		return
	}
	if f.status != 0 {
		answer(f.status, fmt.Sprintf(`{"error": %q}`, f.message))
		return
	}
	switch {
	case r.Method == "GET" && r.URL.Path == "/networking/v1/external/policies":
		out := f.policies
		if r.URL.Query().Has("id") {
			ids := strings.Split(r.URL.Query().Get("id"), ",")
			out = nil
			for _, p := range f.policies {
				if slices.Contains(ids, p.Source.ID) || slices.Contains(ids, p.Destination.ID) {
					out = append(out, p)
				}
			}
		}
		answer(200, string(policy.MarshalV1(out)))
	case r.Method == "POST" && (r.URL.Path == "/networking/v1/external/policies" || r.URL.Path == "/networking/v1/external/policies/delete"):
		ps, err := policy.MapV1(body)
		if err != nil {
			answer(400, fmt.Sprintf(`{"error": %q}`, "mapper: "+err.Error()))
			return
		}
		if strings.HasSuffix(r.URL.Path, "/delete") {
			f.policies = slices.DeleteFunc(f.policies, func(p policy.Policy) bool { return slices.Contains(ps, p) })
		} else {
			for _, p := range ps {
				if !slices.Contains(f.policies, p) {
					f.policies = append(f.policies, p)
				}
			}
		}
		answer(200, "{}")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeServer) stored() []policy.Policy {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.policies)
}

func (f *fakeServer) recorded() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests)
}

func writeNames(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "names.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type outcome struct {
	code           int
	stdout, stderr string
}

func run(env map[string]string, args ...string) outcome {
	var stdout, stderr bytes.Buffer
	code := netmancli.Main(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
	return outcome{code, stdout.String(), stderr.String()}
}

func (o outcome) ok(t *testing.T, stdout string) {
	t.Helper()
	if o.code != 0 || o.stdout != stdout || o.stderr != "" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant exit 0, stdout %q", o.code, o.stdout, o.stderr, stdout)
	}
}

func (o outcome) fails(t *testing.T, stderr string) {
	t.Helper()
	if o.code != 1 || o.stderr != stderr || o.stdout != "" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q\nwant exit 1, stderr %q", o.code, o.stdout, o.stderr, stderr)
	}
}

type env map[string]string

func setup(t *testing.T) (*fakeServer, env) {
	f := newFakeServer(t)
	names := writeNames(t, `{"frontend": "`+guidFront+`", "backend": "`+guidBack+`", "web": "`+guidFront+`"}`)
	return f, env{"NETMAN_API": f.srv.URL, "NETMAN_TOKEN": "s3cret", "NETMAN_APP_NAMES": names}
}

func TestAddListRemove(t *testing.T) {
	f, e := setup(t)
	run(e, "add", "frontend", "backend", "--protocol", "tcp", "--port", "8080").ok(t, "added policy: frontend -> backend tcp 8080\n")
	run(e, "add", "backend", guidOther, "--protocol=UDP", "--port=5000-5010").ok(t, "added policy: backend -> "+guidOther+" udp 5000-5010\n")
	want := []policy.Policy{policy.NewPolicy(guidFront, guidBack, "tcp", 8080, 8080), policy.NewPolicy(guidBack, guidOther, "udp", 5000, 5010)}
	if diff := cmp.Diff(want, f.stored()); diff != "" {
		t.Fatalf("stored (-want +got):\n%s", diff)
	}

	run(e, "list").ok(t, ""+
		"source     destination                            protocol   ports\n"+
		"frontend   backend                                tcp        8080\n"+
		"backend    33333333-3333-4333-8333-333333333333   udp        5000-5010\n")
	run(e, "list", "--app", "frontend").ok(t, ""+
		"source     destination   protocol   ports\n"+
		"frontend   backend       tcp        8080\n")
	run(e, "--json", "list").ok(t, string(policy.MarshalV1(want))+"\n")
	run(e, "list", "--json", "--app", guidOther).ok(t, string(policy.MarshalV1(want[1:]))+"\n")

	run(e, "remove", "frontend", "backend", "--protocol", "tcp", "--port", "8080").ok(t, "removed policy: frontend -> backend tcp 8080\n")
	run(e, "remove", "frontend", "backend", "--protocol", "tcp", "--port", "8080").ok(t, "policy does not exist: frontend -> backend tcp 8080\n")
	run(e, "--json", "remove", "backend", guidOther, "--protocol", "udp", "--port", "5000-5010").ok(t, string(policy.MarshalV1(want[1:]))+"\n")
	run(e, "list").ok(t, "source   destination   protocol   ports\n")
	run(e, "list", "--json").ok(t, `{"total_policies":0,"policies":[]}`+"\n")

	wantRequests := []string{
		`POST /networking/v1/external/policies {"policies":[{"source":{"id":"` + guidFront + `"},"destination":{"id":"` + guidBack + `","protocol":"tcp","ports":{"start":8080,"end":8080}}}]}`,
		`POST /networking/v1/external/policies {"policies":[{"source":{"id":"` + guidBack + `"},"destination":{"id":"` + guidOther + `","protocol":"udp","ports":{"start":5000,"end":5010}}}]}`,
		"GET /networking/v1/external/policies",
		"GET /networking/v1/external/policies?id=" + guidFront,
		"GET /networking/v1/external/policies",
		"GET /networking/v1/external/policies?id=" + guidOther,
		"GET /networking/v1/external/policies?id=" + guidFront,
		`POST /networking/v1/external/policies/delete {"policies":[{"source":{"id":"` + guidFront + `"},"destination":{"id":"` + guidBack + `","protocol":"tcp","ports":{"start":8080,"end":8080}}}]}`,
		"GET /networking/v1/external/policies?id=" + guidFront,
		"GET /networking/v1/external/policies?id=" + guidBack,
		`POST /networking/v1/external/policies/delete {"policies":[{"source":{"id":"` + guidBack + `"},"destination":{"id":"` + guidOther + `","protocol":"udp","ports":{"start":5000,"end":5010}}}]}`,
		"GET /networking/v1/external/policies",
		"GET /networking/v1/external/policies",
	}
	if diff := cmp.Diff(wantRequests, f.recorded()); diff != "" {
		t.Fatalf("requests (-want +got):\n%s", diff)
	}
}

func TestFlagsAndEnvironment(t *testing.T) {
	f, e := setup(t)
	// Flags win over the environment, and may come anywhere on the line.
	run(env{"NETMAN_API": "http://127.0.0.1:1", "NETMAN_TOKEN": "wrong"},
		"--api", f.srv.URL, "--token=s3cret", "--names", e["NETMAN_APP_NAMES"], "add", "web", "backend", "--port", "1", "--protocol", "tcp").
		ok(t, "added policy: frontend -> backend tcp 1\n") // web and frontend share a guid: the first name sorted is shown
	run(env{"NETMAN_API": f.srv.URL}, "list", "--token", "s3cret").ok(t, "source                                 destination                            protocol   ports\n"+
		guidFront+"   "+guidBack+"   tcp        1\n")
	// A token pasted with its scheme (cf oauth-token) is sent as is.
	run(env{"NETMAN_API": f.srv.URL, "NETMAN_TOKEN": "Bearer s3cret"}, "list", "--json").ok(t, string(policy.MarshalV1(f.stored()))+"\n")
}

func TestHelp(t *testing.T) {
	run(nil).fails(t, "netman: no command (see 'netman help')\n")
	run(nil, "--json").fails(t, "netman: no command (see 'netman help')\n")
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"list", "--help"}, {"--help", "frobnicate"}} {
		o := run(nil, args...)
		if o.code != 0 || o.stdout != netmancli.Usage || o.stderr != "" {
			t.Fatalf("%q: exit %d, stdout %q, stderr %q", args, o.code, o.stdout, o.stderr)
		}
	}
	if !strings.Contains(netmancli.Usage, "netman [--api URL] [--token TOKEN] [--names FILE] [--json] [--skip-ssl-validation] <command> [args]") {
		t.Fatal("the usage line changed: the lab prints it")
	}
}

func TestErrors(t *testing.T) {
	f, e := setup(t)
	with := func(k, v string) env {
		out := env{}
		for a, b := range e {
			out[a] = b
		}
		out[k] = v
		return out
	}
	add := []string{"add", "frontend", "backend", "--protocol", "tcp", "--port", "8080"}

	t.Run("usage", func(t *testing.T) {
		tests := []struct {
			args []string
			want string
		}{
			{[]string{"frobnicate"}, `unknown command "frobnicate"`},
			{[]string{"list", "--bogus"}, "unknown flag --bogus"},
			{[]string{"list", "--app"}, "flag --app needs a value"},
			{[]string{"list", "extra"}, `list takes no arguments, got "extra"`},
			{[]string{"list", "--port", "80"}, "list does not take --port"},
			{[]string{"add", "--app", "x", "a", "b"}, "add does not take --app"},
			{[]string{"add", "frontend", "--protocol", "tcp", "--port", "80"}, "add needs SOURCE and DESTINATION, got 1 argument(s)"},
			{[]string{"remove", "a", "b", "c", "--protocol", "tcp", "--port", "80"}, "remove needs SOURCE and DESTINATION, got 3 argument(s)"},
			{[]string{"add", "frontend", "backend", "--port", "80"}, "add needs --protocol tcp|udp and --port N|N-M"},
			{[]string{"add", "frontend", "backend", "--protocol", "tcp"}, "add needs --protocol tcp|udp and --port N|N-M"},
			{[]string{"add", "frontend", "backend", "--protocol", "icmp", "--port", "80"}, `invalid --protocol "icmp": want tcp or udp`},
			{[]string{"add", "frontend", "backend", "--protocol", "tcp", "--port", "0"}, `invalid --port "0": want N or N-M with 1 <= N <= M <= 65535`},
			{[]string{"add", "frontend", "backend", "--protocol", "tcp", "--port", "9-8"}, `invalid --port "9-8": want N or N-M with 1 <= N <= M <= 65535`},
			{[]string{"add", "frontend", "backend", "--protocol", "tcp", "--port", "1-65536"}, `invalid --port "1-65536": want N or N-M with 1 <= N <= M <= 65535`},
			{[]string{"add", "frontend", "backend", "--protocol", "tcp", "--port", "http"}, `invalid --port "http": want N or N-M with 1 <= N <= M <= 65535`},
			{[]string{"--json=maybe", "list"}, `flag --json takes no value, got "maybe"`},
		}
		for _, tt := range tests {
			run(e, tt.args...).fails(t, "netman: "+tt.want+" (see 'netman help')\n")
		}
		if n := len(f.recorded()); n != 0 {
			t.Fatalf("%d requests for bad command lines", n)
		}
	})
	t.Run("configuration", func(t *testing.T) {
		run(with("NETMAN_API", ""), "list").fails(t, "netman: no policy server: set --api or NETMAN_API\n")
		run(with("NETMAN_API", "127.0.0.1:4002"), "list").fails(t, "netman: invalid policy server URL \"127.0.0.1:4002\": want http(s)://host[:port]\n")
		run(with("NETMAN_TOKEN", ""), "list").fails(t, "netman: no token: set --token or NETMAN_TOKEN\n")
		missing := filepath.Join(t.TempDir(), "nope.json")
		o := run(with("NETMAN_APP_NAMES", missing), "list")
		if o.code != 1 || !strings.HasPrefix(o.stderr, "netman: reading names file: open "+missing+": ") {
			t.Fatalf("exit %d, stderr %q", o.code, o.stderr)
		}
		bad := writeNames(t, `["frontend"]`)
		o = run(with("NETMAN_APP_NAMES", bad), "list")
		if o.code != 1 || !strings.HasPrefix(o.stderr, "netman: names file "+bad+": want a JSON object") || strings.Count(o.stderr, "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", o.code, o.stderr)
		}
		empty := writeNames(t, `{"frontend": ""}`)
		run(with("NETMAN_APP_NAMES", empty), "list").fails(t, "netman: names file "+empty+": empty app name or guid (\"frontend\": \"\")\n")
	})
	t.Run("unknown app", func(t *testing.T) {
		run(e, "add", "frontent", "backend", "--protocol", "tcp", "--port", "80").
			fails(t, "netman: unknown app \"frontent\": not in names file "+e["NETMAN_APP_NAMES"]+" and not a GUID\n")
		run(with("NETMAN_APP_NAMES", ""), "list", "--app", "frontend").
			fails(t, "netman: unknown app \"frontend\": not a GUID, and no names file (--names or NETMAN_APP_NAMES)\n")
		if n := len(f.recorded()); n != 0 {
			t.Fatalf("%d requests for unknown apps", n)
		}
	})
	t.Run("unauthorized", func(t *testing.T) {
		run(with("NETMAN_TOKEN", "wrong"), add...).fails(t, "netman: unauthorized: check --token / NETMAN_TOKEN\n")
	})
	t.Run("server answers", func(t *testing.T) {
		tests := []struct {
			status int
			msg    string
			want   string
		}{
			{403, "one or more applications cannot be found or accessed", "forbidden: one or more applications cannot be found or accessed"},
			{400, "mapper: validate policies: missing start port", "invalid request: mapper: validate policies: missing start port"},
			{500, "database create failed", "policy server error (http 500): database create failed"},
		}
		for _, tt := range tests {
			f.mu.Lock()
			f.status, f.message = tt.status, tt.msg
			f.mu.Unlock()
			run(e, add...).fails(t, "netman: "+tt.want+"\n")
		}
		f.mu.Lock()
		f.status = 0
		f.mu.Unlock()
	})
	t.Run("not a policy server", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		t.Cleanup(srv.Close)
		run(with("NETMAN_API", srv.URL+"/"), "list").
			fails(t, "netman: not found: GET "+srv.URL+"/networking/v1/external/policies (is --api a policy server?)\n")
	})
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + l.Addr().String()
		_ = l.Close()
		o := run(with("NETMAN_API", url), "list")
		if o.code != 1 || !strings.HasPrefix(o.stderr, "netman: cannot reach policy server at "+url+": ") || strings.Count(o.stderr, "\n") != 1 {
			t.Fatalf("exit %d, stderr %q", o.code, o.stderr)
		}
	})
	t.Run("tls", func(t *testing.T) {
		srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
		srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
		srv.StartTLS()
		t.Cleanup(srv.Close)
		o := run(with("NETMAN_API", srv.URL), "list")
		if o.code != 1 || !strings.HasPrefix(o.stderr, "netman: cannot reach policy server at "+srv.URL+": ") || !strings.Contains(o.stderr, "certificate") {
			t.Fatalf("exit %d, stderr %q", o.code, o.stderr)
		}
		run(with("NETMAN_API", srv.URL), "--skip-ssl-validation", "list").ok(t, "source   destination   protocol   ports\n")
	})
}

func TestStoredPoliciesUntouchedByFailures(t *testing.T) {
	f, e := setup(t)
	run(e, "add", "frontend", "nobody", "--protocol", "tcp", "--port", "80").fails(t,
		"netman: unknown app \"nobody\": not in names file "+e["NETMAN_APP_NAMES"]+" and not a GUID\n")
	if diff := cmp.Diff([]policy.Policy(nil), f.stored(), cmpopts.EquateEmpty()); diff != "" {
		t.Fatal(diff)
	}
}
