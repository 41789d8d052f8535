package lab

import (
	"errors"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	for _, tc := range []struct {
		name, backend, demo string
		down                error
		want                string
	}{
		{"the demo ran", "iptables", "denied → allowed → denied", nil, "demo on iptables: denied → allowed → denied; lab removed"},
		{"on nftables", "nftables", "denied → allowed → denied", nil, "demo on nftables: denied → allowed → denied; lab removed"},
		{"a step never came", "iptables", Unfinished("denied → allowed"), nil, "demo on iptables: denied → allowed, then failed; lab removed"},
		{"no outcome", "nftables", Unfinished(""), nil, "demo on nftables: failed before its first outcome; lab removed"},
		{"removal failed", "iptables", "denied → allowed → denied", errors.New("busy"), "demo on iptables: denied → allowed → denied; lab not fully removed (scripts/lab down removes the rest)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summary(tc.backend, tc.demo, tc.down); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTourCurlsFailFast: every curl in the tour shows its error (-sS) and
// gives up after two seconds (-m 2), so a denied call says so at once.
func TestTourCurlsFailFast(t *testing.T) {
	st := &State{Dir: "/tmp/lab", Bins: "/tmp/bin", Cells: []CellState{{Index: 1, NS: "c1"}, {Index: 2, NS: "c2", UnderlayIP: "10.244.0.12"}},
		Apps: []AppState{{Name: "frontend", NS: "fe", Cell: 1, Route: "frontend.apps.internal"}, {Name: "backend", NS: "be", Cell: 2, Route: "backend.apps.internal", IP: "10.255.1.2", Port: 8080, HostPort: 61000}}}
	curls := 0
	for _, line := range strings.Split(st.Tour(), "\n") {
		if strings.Contains(line, "curl") {
			curls++
			if !strings.Contains(line, "curl -sS -m 2 ") {
				t.Errorf("tour line without curl -sS -m 2: %s", line)
			}
		}
	}
	if curls < 4 {
		t.Errorf("%d curls in the tour, want the name, adapter, table, IP and host port calls:\n%s", curls, st.Tour())
	}
}
