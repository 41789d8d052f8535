package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/cli/netmancli"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/celltest"
)

// TestTraceVerdicts: `netman trace` against the real policy servers and
// agents, on each backend, agrees with the connections themselves: an
// allowed connection (a policy, enforced by both cells) traces allowed,
// denied ones (no policy; the reverse direction; another port) trace
// denied, a removed policy traces denied again once the cells dropped
// it; and `netman graph` draws the policy.
func TestTraceVerdicts(t *testing.T) {
	onEachBackend(t, true, testTraceVerdicts)
}

func testTraceVerdicts(t *testing.T, backend string) {
	lab := celltest.New(t, celltest.Options{Cells: 2, Policy: true, Backend: backend})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	a := c1.AddContainer(t, app("app-a", "space-1"))
	b := c2.AddContainer(t, app("app-b", "space-1"))
	celltest.Listen(t, b.NS, "tcp", b.IP+":8080")
	celltest.Listen(t, b.NS, "tcp", b.IP+":9003")
	celltest.Listen(t, a.NS, "tcp", a.IP+":8080")
	env := lab.NetmanEnv(t, map[string]string{"frontend": "app-a", "backend": "app-b"})

	netman := func(args ...string) (string, error) {
		var stdout, stderr strings.Builder
		code := netmancli.Main(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
		if code != 0 {
			return stdout.String(), fmt.Errorf("netman %s: exit %d: %s", strings.Join(args, " "), code, stderr.String())
		}
		return stdout.String(), nil
	}
	trace := func(src, dst string, port int) (observe.Result, string) {
		t.Helper()
		out, err := netman("trace", src, dst, "--protocol", "tcp", "--port", fmt.Sprint(port), "--json")
		if err != nil {
			t.Fatal(err)
		}
		var r observe.Result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("trace --json: %v\n%s", err, out)
		}
		return r, out
	}
	wantVerdict := func(src, dst string, port int, want string) observe.Result {
		t.Helper()
		r, out := trace(src, dst, port)
		if r.Verdict != want {
			t.Fatalf("trace %s -> %s tcp %d: %s (%s), want %s:\n%s", src, dst, port, r.Verdict, r.Reason, want, out)
		}
		return r
	}
	// stepsOK checks that the trace saw the source marked on cell 1 and
	// the destination accepting on cell 2, on this backend.
	stepsOK := func(r observe.Result) {
		t.Helper()
		seen := map[string]bool{}
		for _, s := range r.Steps {
			if s.Status == observe.StatusOK {
				seen[s.Step+"@"+s.Cell] = true
			}
			if s.Step == "agent" && !strings.HasPrefix(s.Detail, backend+" backend") {
				t.Errorf("agent step %q: want the %s backend", s.Detail, backend)
			}
		}
		for _, want := range []string{"source@" + c1.UnderlayIP + ":8721", "destination@" + c2.UnderlayIP + ":8721", "policy@"} {
			if !seen[want] {
				t.Errorf("no ok step %s in %+v", want, r.Steps)
			}
		}
	}

	t.Run("no policy: denied, and the connection is", func(t *testing.T) {
		denied(t, a, "tcp", b.IP+":8080")
		wantVerdict("frontend", "backend", 8080, observe.VerdictDenied)
	})

	tcp8080 := policy.NewPolicy("app-a", "app-b", "tcp", 8080, 8080)
	t.Run("a policy: allowed once enforced, and the connection is", func(t *testing.T) {
		lab.CreatePolicies(t, tcp8080)
		eventually(t, 5*time.Second, func() error { return celltest.Echo(a.NS, "tcp", b.IP+":8080", "a to b") })
		eventually(t, 5*time.Second, func() error {
			if r, out := trace("frontend", "backend", 8080); r.Verdict != observe.VerdictAllowed {
				return fmt.Errorf("verdict %s:\n%s", r.Verdict, out)
			}
			return nil
		})
		stepsOK(wantVerdict("frontend", "backend", 8080, observe.VerdictAllowed))
		out, err := netman("trace", "frontend", "backend", "--protocol", "tcp", "--port", "8080")
		if err != nil || !strings.Contains(out, "verdict: ALLOWED") || !strings.Contains(out, "accepts tag ") {
			t.Errorf("readable trace: %v\n%s", err, out)
		}
	})

	t.Run("what the policy does not cover: denied, and the connections are", func(t *testing.T) {
		denied(t, a, "tcp", b.IP+":9003")
		r := wantVerdict("frontend", "backend", 9003, observe.VerdictDenied)
		if len(r.Policies) != 1 || r.Policies[0].Allows {
			t.Errorf("policies %+v: want the tcp 8080 one, not allowing 9003", r.Policies)
		}
		denied(t, b, "tcp", a.IP+":8080")
		wantVerdict("backend", "frontend", 8080, observe.VerdictDenied)
	})

	t.Run("graph", func(t *testing.T) {
		out, err := netman("graph")
		if err != nil || !strings.Contains(out, `"app-a" -> "app-b" [label="tcp 8080"];`) || !strings.Contains(out, `"app-b" [label="backend\n1 instance"];`) {
			t.Errorf("graph: %v\n%s", err, out)
		}
	})

	t.Run("the policy removed: denied again", func(t *testing.T) {
		lab.DeletePolicies(t, tcp8080)
		eventually(t, 5*time.Second, func() error {
			if r, out := trace("frontend", "backend", 8080); r.Verdict != observe.VerdictDenied {
				return fmt.Errorf("verdict %s:\n%s", r.Verdict, out)
			}
			return nil
		})
		denied(t, a, "tcp", b.IP+":8080")
	})
}
