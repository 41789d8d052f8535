package cfplugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"code.cloudfoundry.org/cli/plugin"
	plugin_models "code.cloudfoundry.org/cli/plugin/models"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/netman-release/netman/src/cli/cfplugin"
	"github.com/netman-release/netman/src/policy"
)

const token = "bearer tok-123"

// fakeConn is the part of the cf CLI the plugin talks to. Methods the
// plugin has no business calling are left to the embedded nil interface
// and panic.
type fakeConn struct {
	plugin.CliConnection

	api      string
	skipSSL  bool
	loggedIn bool
	user     string
	token    string
	space    plugin_models.Space
	helpErr  error
	commands [][]string
}

func (c *fakeConn) CliCommandWithoutTerminalOutput(args ...string) ([]string, error) {
	c.commands = append(c.commands, args)
	if c.helpErr != nil {
		return nil, c.helpErr
	}
	if len(args) == 2 && args[0] == "help" {
		return []string{"NAME:", "   " + args[1], "", "USAGE:", "   cf " + args[1] + " ..."}, nil
	}
	return nil, fmt.Errorf("unexpected cf command %q", args)
}
func (c *fakeConn) ApiEndpoint() (string, error) { return c.api, nil }
func (c *fakeConn) IsSSLDisabled() (bool, error) { return c.skipSSL, nil }
func (c *fakeConn) IsLoggedIn() (bool, error)    { return c.loggedIn, nil }
func (c *fakeConn) Username() (string, error)    { return c.user, nil }
func (c *fakeConn) AccessToken() (string, error) { return c.token, nil }
func (c *fakeConn) GetCurrentSpace() (plugin_models.Space, error) {
	return c.space, nil
}

// world: space-1 holds frontend, backend and worker; space-2 holds other.
type world struct {
	cloud *fakeCloud
	conn  *fakeConn
}

func newWorld(t *testing.T) *world {
	t.Helper()
	cloud := newFakeCloud(t, token)
	cloud.addApp("g-front", "frontend", "space-1")
	cloud.addApp("g-back", "backend", "space-1")
	cloud.addApp("g-work", "worker", "space-1")
	cloud.addApp("g-other", "other", "space-2")
	conn := &fakeConn{
		api: cloud.URL(), skipSSL: true, loggedIn: true, user: "alice", token: token,
		space: plugin_models.Space{SpaceFields: plugin_models.SpaceFields{Guid: "space-1", Name: "dev"}},
	}
	return &world{cloud: cloud, conn: conn}
}

type result struct {
	out  string
	exit int // -1: Exit not called
}

func (w *world) run(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out bytes.Buffer
	res := result{exit: -1}
	off := false
	p := &cfplugin.Plugin{
		Out:    &out,
		Getenv: func(k string) string { return env[k] },
		Exit:   func(code int) { res.exit = code },
	}
	if env["CF_COLOR"] == "" {
		p.Color = &off
	}
	p.Run(w.conn, args)
	res.out = out.String()
	return res
}

func expectOK(t *testing.T, r result, want string) {
	t.Helper()
	if r.exit != -1 || r.out != want {
		t.Fatalf("exit %d, output:\n%q\nwant:\n%q", r.exit, r.out, want)
	}
}

func expectFailed(t *testing.T, r result, wantOutput string) {
	t.Helper()
	if r.exit != 1 || r.out != wantOutput {
		t.Fatalf("exit %d, output:\n%q\nwant exit 1 and:\n%q", r.exit, r.out, wantOutput)
	}
}

const (
	v0Path = "/networking/v0/external/policies"
	v1Path = "/networking/v1/external/policies"
)

func TestAllowAndRemove(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		verb     string
		path     string
		body     string
		existing bool // the policy is stored before
	}{
		{"allow single port uses v0", []string{"allow-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080"}, "Allowing",
			v0Path, `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"tcp","port":8080}}]}`, false},
		{"allow range uses v1", []string{"allow-access", "frontend", "backend", "--protocol", "udp", "--port", "8000-9000"}, "Allowing",
			v1Path, `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"udp","ports":{"start":8000,"end":9000}}}]}`, false},
		{"single-dash flags and =", []string{"allow-access", "frontend", "backend", "-port=8080", "-protocol=tcp"}, "Allowing",
			v0Path, `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"tcp","port":8080}}]}`, false},
		{"remove single port uses v0", []string{"remove-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080"}, "Denying",
			v0Path + "/delete", `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"tcp","port":8080}}]}`, true},
		{"remove range uses v1", []string{"remove-access", "frontend", "backend", "--protocol", "udp", "--port", "8000-9000"}, "Denying",
			v1Path + "/delete", `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"udp","ports":{"start":8000,"end":9000}}}]}`, true},
		{"deny-access alias", []string{"deny-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080"}, "Denying",
			v0Path + "/delete", `{"policies":[{"source":{"id":"g-front"},"destination":{"id":"g-back","protocol":"tcp","port":8080}}]}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			body := []byte(tt.body)
			mapped, err := policy.MapV1(body)
			if strings.HasPrefix(tt.path, v0Path) {
				mapped, err = policy.MapV0(body)
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.existing {
				w.cloud.addPolicy(mapped[0])
			}
			r := w.run(t, nil, tt.args...)
			expectOK(t, r, tt.verb+" traffic from frontend to backend as alice...\nOK\n\n")

			want := []recorded{{"POST", tt.path, "", tt.body, token}}
			if diff := cmp.Diff(want, w.cloud.policyRequests()); diff != "" {
				t.Fatalf("policy server requests (-want +got):\n%s", diff)
			}
			var wantStored []policy.Policy
			if !tt.existing {
				wantStored = mapped
			}
			if diff := cmp.Diff(wantStored, w.cloud.stored(), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("stored policies (-want +got):\n%s", diff)
			}
			// Names were resolved in the targeted space, with the CLI's token.
			for _, r := range w.cloud.recorded() {
				if r.Path == "/v3/apps" && !strings.Contains(r.Query, "space_guids=space-1") {
					t.Fatalf("app lookup outside the targeted space: %+v", r)
				}
			}
			if got := w.cloud.recorded()[0]; got.Path != "/v3/apps" || got.Query != "names=frontend&space_guids=space-1" || got.Authorization != token {
				t.Fatalf("first request %+v, want GET /v3/apps?names=frontend&space_guids=space-1", got)
			}
		})
	}
}

func TestAllowFailures(t *testing.T) {
	allow := []string{"allow-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080"}
	const progress = "Allowing traffic from frontend to backend as alice...\n"
	t.Run("source not in the space", func(t *testing.T) {
		w := newWorld(t)
		r := w.run(t, nil, "allow-access", "other", "backend", "--protocol", "tcp", "--port", "8080")
		expectFailed(t, r, "Allowing traffic from other to backend as alice...\nFAILED\nresolving source app: other not found\n")
		if len(w.cloud.policyRequests()) != 0 {
			t.Fatal("the policy server was called")
		}
	})
	t.Run("destination missing", func(t *testing.T) {
		w := newWorld(t)
		r := w.run(t, nil, "allow-access", "frontend", "nope", "--protocol", "tcp", "--port", "8080")
		expectFailed(t, r, "Allowing traffic from frontend to nope as alice...\nFAILED\nresolving destination app: nope not found\n")
	})
	t.Run("cloud controller fails", func(t *testing.T) {
		w := newWorld(t)
		w.cloud.failCC = 500
		r := w.run(t, nil, allow...)
		expectFailed(t, r, progress+"FAILED\nresolving source app: cloud controller: http status 500: An unknown error occurred. (UnknownError)\n")
	})
	t.Run("policy server refuses", func(t *testing.T) {
		w := newWorld(t)
		w.cloud.failPS, w.cloud.failMsg = 403, "one or more applications cannot be found or accessed"
		r := w.run(t, nil, allow...)
		expectFailed(t, r, progress+"FAILED\nadding policies: http status 403: one or more applications cannot be found or accessed\n")
	})
	t.Run("remove refused", func(t *testing.T) {
		w := newWorld(t)
		w.cloud.failPS, w.cloud.failMsg = 500, "database delete failed"
		r := w.run(t, nil, "remove-access", "frontend", "backend", "--protocol", "tcp", "--port", "80-81")
		expectFailed(t, r, "Denying traffic from frontend to backend as alice...\nFAILED\ndeleting policies: http status 500: database delete failed\n")
	})
	t.Run("expired token", func(t *testing.T) {
		w := newWorld(t)
		w.conn.token = "bearer stale"
		r := w.run(t, nil, allow...)
		expectFailed(t, r, progress+"FAILED\nresolving source app: cloud controller: http status 401: Invalid Auth Token (CF-InvalidAuthToken)\n")
	})
	t.Run("certificate verified unless ssl is disabled", func(t *testing.T) {
		w := newWorld(t)
		w.conn.skipSSL = false
		r := w.run(t, nil, allow...)
		if r.exit != 1 || !strings.Contains(r.out, "FAILED\nresolving source app: cannot reach cloud controller at "+w.cloud.URL()) ||
			!strings.Contains(r.out, "certificate") {
			t.Fatalf("exit %d, output %q", r.exit, r.out)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		w := newWorld(t)
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		w.conn.api = "https://" + l.Addr().String()
		_ = l.Close()
		r := w.run(t, nil, allow...)
		if r.exit != 1 || !strings.Contains(r.out, "FAILED\nresolving source app: cannot reach cloud controller at "+w.conn.api+": ") {
			t.Fatalf("exit %d, output %q", r.exit, r.out)
		}
	})
	t.Run("not logged in", func(t *testing.T) {
		w := newWorld(t)
		w.conn.loggedIn = false
		expectFailed(t, w.run(t, nil, allow...), "FAILED\nNot logged in. Use 'cf login' or 'cf login --sso' to log in.\n")
	})
	t.Run("no space targeted", func(t *testing.T) {
		w := newWorld(t)
		w.conn.space = plugin_models.Space{}
		expectFailed(t, w.run(t, nil, allow...), progress+"FAILED\nNo space targeted, use 'cf target -s SPACE' to target a space.\n")
	})
}

func TestValidation(t *testing.T) {
	const help = "\n\nNAME:\n   %s\n\nUSAGE:\n   cf %s ..."
	tests := []struct {
		args []string
		why  string
	}{
		{[]string{"allow-access", "frontend", "--protocol", "tcp", "backend", "--port", "8080"}, ""},
		{[]string{"allow-access", "frontend", "backend", "--protocol", "tcp"}, ""},
		{[]string{"allow-access", "frontend"}, ""},
		{[]string{"allow-access"}, ""},
		{[]string{"remove-access", "a", "b", "c", "--protocol", "tcp", "--port", "80"}, ""},
		{[]string{"remove-access", "a", "b", "--protocol", "tcp", "--port", "80", "extra"}, ""},
		{[]string{"remove-access", "a", "b", "--protocol", "tcp", "--poooort", "80"}, "flag provided but not defined: -poooort"},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "http"}, "Port is not valid: http"},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "0"}, "Port is not valid. Must be in range <1-65535>."},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "65536"}, "Port is not valid. Must be in range <1-65535>."},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "80-70000"}, "Port is not valid. Must be in range <1-65535>."},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "90-80"},
			"Port range is not valid: 90-80. The start port must not be greater than the end port."},
		{[]string{"allow-access", "a", "b", "--protocol", "tcp", "--port", "80-"}, "Port is not valid: 80-"},
		{[]string{"allow-access", "a", "b", "--protocol", "icmp", "--port", "80"}, "Protocol is not valid. Must be tcp or udp."},
		{[]string{"allow-access", "a", "b", "--protocol", "TCP", "--port", "80"}, "Protocol is not valid. Must be tcp or udp."},
		{[]string{"deny-access", "a", "b", "--port", "80", "--port", "81"}, "Protocol is not valid. Must be tcp or udp."},
		{[]string{"list-access", "frontend"}, ""},
		{[]string{"list-access", "--app"}, ""},
		{[]string{"list-access", "-app", "frontend"}, ""},
		{[]string{"list-access", "--app", "a", "--app", "b"}, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			w := newWorld(t)
			r := w.run(t, nil, tt.args...)
			want := "FAILED\nIncorrect usage. " + tt.why + fmt.Sprintf(help, tt.args[0], tt.args[0]) + "\n"
			expectFailed(t, r, want)
			if diff := cmp.Diff([][]string{{"help", tt.args[0]}}, w.conn.commands); diff != "" {
				t.Fatalf("cf commands (-want +got):\n%s", diff)
			}
			if len(w.cloud.recorded()) != 0 {
				t.Fatalf("requests were made: %+v", w.cloud.recorded())
			}
		})
	}
	t.Run("help itself fails", func(t *testing.T) {
		w := newWorld(t)
		w.conn.helpErr = errors.New("rpc is down")
		expectFailed(t, w.run(t, nil, "allow-access", "a"), "FAILED\ncf cli error: rpc is down\n")
	})
	t.Run("unknown command", func(t *testing.T) {
		w := newWorld(t)
		expectFailed(t, w.run(t, nil, "frobnicate"), "FAILED\nInvalid command\n")
	})
}

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in         string
		start, end int
		bad        bool
	}{
		{"1", 1, 1, false}, {"65535", 65535, 65535, false}, {"8080-8090", 8080, 8090, false}, {"5-5", 5, 5, false},
		{"", 0, 0, true}, {"0", 0, 0, true}, {"-1", 0, 0, true}, {"1-0", 0, 0, true}, {"a-b", 0, 0, true},
		{"1-2-3", 0, 0, true}, {" 80", 0, 0, true}, {"+80", 80, 80, false},
	}
	for _, tt := range tests {
		start, end, msg := cfplugin.ParsePorts(tt.in)
		if (msg != "") != tt.bad || (!tt.bad && (start != tt.start || end != tt.end)) {
			t.Errorf("ParsePorts(%q) = %d, %d, %q", tt.in, start, end, msg)
		}
	}
}

func TestList(t *testing.T) {
	setup := func(t *testing.T) *world {
		w := newWorld(t)
		w.cloud.addPolicy(policy.NewPolicy("g-front", "g-back", "tcp", 8080, 8080))
		w.cloud.addPolicy(policy.NewPolicy("g-back", "g-work", "udp", 9000, 9100))
		w.cloud.addPolicy(policy.NewPolicy("g-front", "g-other", "tcp", 443, 443)) // destination in another space
		w.cloud.addPolicy(policy.NewPolicy("g-gone", "g-front", "tcp", 22, 22))    // an app CC does not know
		return w
	}
	t.Run("all", func(t *testing.T) {
		w := setup(t)
		r := w.run(t, nil, "list-access")
		expectOK(t, r, "Listing policies as alice...\nOK\n\n"+
			"Source\t\tDestination\tProtocol\tPorts\n"+
			"frontend\tbackend\t\ttcp\t\t8080-8080\n"+
			"backend\t\tworker\t\tudp\t\t9000-9100\n")
		want := []recorded{{"GET", v1Path, "", "", token}}
		if diff := cmp.Diff(want, w.cloud.policyRequests()); diff != "" {
			t.Fatalf("policy server requests (-want +got):\n%s", diff)
		}
	})
	t.Run("by app", func(t *testing.T) {
		w := setup(t)
		r := w.run(t, nil, "list-access", "--app", "worker")
		expectOK(t, r, "Listing policies as alice...\nOK\n\n"+
			"Source\t\tDestination\tProtocol\tPorts\n"+
			"backend\t\tworker\t\tudp\t\t9000-9100\n")
		want := []recorded{{"GET", v1Path, "id=g-work", "", token}}
		if diff := cmp.Diff(want, w.cloud.policyRequests()); diff != "" {
			t.Fatalf("policy server requests (-want +got):\n%s", diff)
		}
	})
	t.Run("by app with =", func(t *testing.T) {
		w := setup(t)
		r := w.run(t, nil, "list-access", "--app=worker")
		if r.exit != -1 || !strings.HasSuffix(r.out, "backend\t\tworker\t\tudp\t\t9000-9100\n") {
			t.Fatalf("exit %d, output %q", r.exit, r.out)
		}
	})
	t.Run("empty", func(t *testing.T) {
		w := newWorld(t)
		expectOK(t, w.run(t, nil, "list-access"), "Listing policies as alice...\nOK\n\nSource\tDestination\tProtocol\tPorts\n")
	})
	t.Run("app not found", func(t *testing.T) {
		w := setup(t)
		expectFailed(t, w.run(t, nil, "list-access", "--app", "other"), "Listing policies as alice...\nFAILED\ngetting app: other not found\n")
	})
	t.Run("policy server fails", func(t *testing.T) {
		w := setup(t)
		w.cloud.failPS, w.cloud.failMsg = 500, "database read failed"
		expectFailed(t, w.run(t, nil, "list-access"), "Listing policies as alice...\nFAILED\ngetting policies: http status 500: database read failed\n")
		expectFailed(t, w.run(t, nil, "list-access", "--app", "worker"),
			"Listing policies as alice...\nFAILED\ngetting policies by id: http status 500: database read failed\n")
	})
	t.Run("pages of apps are followed on the API endpoint", func(t *testing.T) {
		w := setup(t)
		w.cloud.pageSize = 1
		r := w.run(t, nil, "list-access")
		if r.exit != -1 || !strings.Contains(r.out, "backend\t\tworker") {
			t.Fatalf("exit %d, output %q", r.exit, r.out)
		}
		pages := 0
		for _, rq := range w.cloud.recorded() {
			if rq.Path == "/v3/apps" {
				pages++
			}
		}
		if pages != 3 {
			t.Fatalf("%d app pages fetched, want 3", pages)
		}
	})
}

func TestColors(t *testing.T) {
	w := newWorld(t)
	w.cloud.addPolicy(policy.NewPolicy("g-front", "g-back", "tcp", 8080, 8080))
	r := w.run(t, map[string]string{"CF_COLOR": "true"}, "list-access")
	const (
		cyan  = "\x1b[36;1m"
		reset = "\x1b[0m"
	)
	want := "Listing policies as " + cyan + "alice" + reset + "...\n" +
		"\x1b[32;1mOK" + reset + "\n\n" +
		"\x1b[;1mSource\t\tDestination\tProtocol\tPorts" + reset + "\n" +
		cyan + "frontend" + reset + "\t" + cyan + "backend" + reset + "\t\ttcp\t\t8080-8080\n"
	expectOK(t, r, want)

	r = w.run(t, map[string]string{"CF_COLOR": "true"}, "list-access", "extra")
	if !strings.HasPrefix(r.out, "\x1b[31;1mFAILED"+reset+"\n") {
		t.Fatalf("output %q", r.out)
	}
}

func TestTraceHidesToken(t *testing.T) {
	w := newWorld(t)
	r := w.run(t, map[string]string{"CF_TRACE": "true"}, "allow-access", "frontend", "backend", "--protocol", "tcp", "--port", "8080")
	if r.exit != -1 {
		t.Fatalf("exit %d: %s", r.exit, r.out)
	}
	for _, want := range []string{"REQUEST: [", "GET /v3/apps?names=frontend&space_guids=space-1 HTTP/1.1",
		"POST /networking/v0/external/policies HTTP/1.1", `{"policies":[{"source":{"id":"g-front"}`,
		"RESPONSE: [", "HTTP/1.1 200 OK", "Authorization: [PRIVATE DATA HIDDEN]"} {
		if !strings.Contains(r.out, want) {
			t.Errorf("trace lacks %q", want)
		}
	}
	if strings.Contains(r.out, "tok-123") {
		t.Error("the token was traced")
	}
	if !strings.HasSuffix(r.out, "OK\n\n") {
		t.Errorf("output ends %q", r.out[max(0, len(r.out)-40):])
	}
}

func TestMetadata(t *testing.T) {
	md := cfplugin.New().GetMetadata()
	if md.Name != "network-policy" || md.MinCliVersion != (plugin.VersionType{Major: 6, Minor: 15}) {
		t.Fatalf("metadata %+v", md)
	}
	var names []string
	for _, c := range md.Commands {
		names = append(names, c.Name+"/"+c.Alias)
		if !strings.HasPrefix(c.UsageDetails.Usage, "cf "+c.Name+" ") {
			t.Errorf("usage of %s: %q", c.Name, c.UsageDetails.Usage)
		}
	}
	if diff := cmp.Diff([]string{"allow-access/", "list-access/", "remove-access/deny-access"}, names); diff != "" {
		t.Fatalf("commands (-want +got):\n%s", diff)
	}
}

func TestRunWithErrorsReturnsTable(t *testing.T) {
	w := newWorld(t)
	w.cloud.addPolicy(policy.NewPolicy("g-front", "g-back", "tcp", 1, 2))
	var out bytes.Buffer
	p := &cfplugin.Plugin{Out: &out}
	table, err := p.RunWithErrors(context.Background(), w.conn, []string{"list-access"})
	if err != nil || table != "Source\t\tDestination\tProtocol\tPorts\nfrontend\tbackend\t\ttcp\t\t1-2\n" || out.String() != "Listing policies as alice...\n" {
		t.Fatalf("got %q, %v; printed %q", table, err, out.String())
	}
}
