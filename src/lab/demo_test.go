package lab

import (
	"errors"
	"slices"
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

// TestTourCurlsFailFast: every curl in the tour, the c2c calls and the
// ASG ones (Cloud Controller's write API, the outside service), shows its
// error (-sS) and gives up after two seconds (-m 2), so a denied call says
// so at once.
func TestTourCurlsFailFast(t *testing.T) {
	st := &State{Dir: "/tmp/lab", Bins: "/tmp/bin", Plan: Plan{Prefix: "10.244.0."}, Cells: []CellState{{Index: 1, NS: "c1"}, {Index: 2, NS: "c2", UnderlayIP: "10.244.0.12"}},
		Apps: []AppState{{Name: "frontend", NS: "fe", Cell: 1, Route: "frontend.apps.internal", Space: "space-1"},
			{Name: "backend", NS: "be", Cell: 2, Route: "backend.apps.internal", IP: "10.255.1.2", Port: 8080, HostPort: 61000}},
		Egress: &EgressState{Service: "10.244.0.1:9443", Caller: Caller{Calls: "http://10.244.0.1:9443/", Log: "/tmp/lab/apps/frontend-egress.log"}}}
	var curls []string
	for _, line := range strings.Split(st.Tour(), "\n") {
		if strings.Contains(line, "curl") {
			curls = append(curls, line)
			if !strings.Contains(line, "curl -sS -m 2 ") {
				t.Errorf("tour line without curl -sS -m 2: %s", line)
			}
		}
	}
	for _, want := range []string{"backend.apps.internal:8080", "?name=backend.apps.internal.", "/routes", "10.255.1.2:8080",
		"10.244.0.12:61000", "-X PUT", "-X DELETE", "fe curl -sS -m 2 http://10.244.0.1:9443/"} {
		if !slices.ContainsFunc(curls, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("no curl in the tour with %q:\n%s", want, strings.Join(curls, "\n"))
		}
	}
}

// TestTourOverIPv6: a dual-stack lab's tour has the IPv6 calls (the
// backend's IPv6 address, the outside service's) and a security group
// for the outside service's IPv6 address, every curl failing fast.
func TestTourOverIPv6(t *testing.T) {
	st := &State{Dir: "/tmp/lab", Bins: "/tmp/bin", Plan: Plan{Prefix: "10.244.0.", Underlay6: "fd6c:6162:f4:0::"}, Cells: []CellState{{Index: 1, NS: "c1"}, {Index: 2, NS: "c2"}},
		Apps:   []AppState{{Name: "frontend", NS: "fe", Cell: 1, Space: "space-1"}, {Name: "backend", NS: "be", Cell: 2, IP: "10.255.1.2", IP6: "fd73:696c:6b::aff:102", Port: 8080}},
		Egress: &EgressState{Service: "10.244.0.1:9443", Caller: Caller{Calls: "http://10.244.0.1:9443/"}},
		IPv6: &IPv6State{C2C: Caller{Calls: "http://[fd73:696c:6b::aff:102]:8080/", Log: "/tmp/lab/apps/frontend6.log"},
			Egress: &EgressState{Service: "[fd6c:6162:f4:0::1]:9443", Caller: Caller{Calls: "http://[fd6c:6162:f4:0::1]:9443/"}}}}
	tour := st.Tour()
	for _, want := range []string{
		"fe curl -sS -m 2 http://[fd73:696c:6b::aff:102]:8080/",
		"fe curl -sS -m 2 http://[fd6c:6162:f4:0::1]:9443/",
		`"destination":"fd6c:6162:f4:0::1","ports":"9443"`,
		"tail -f /tmp/lab/apps/frontend6.log",
	} {
		if !strings.Contains(tour, want) {
			t.Errorf("tour lacks %q:\n%s", want, tour)
		}
	}
}

// TestStatusTourAndReportNameTheBackend: status, the tour and the report
// say which data plane the cells run; a ledger without one (a lab from
// before --backend) is iptables.
func TestStatusTourAndReportNameTheBackend(t *testing.T) {
	for _, tc := range []struct {
		backend, status, tour string
	}{
		{BackendNFTables, "data plane    nftables (every cell's table inet netman)", "ip netns exec c2 nft list table inet netman"},
		{BackendIPTables, "data plane    iptables (upstream's chains", "ip netns exec c2 iptables-save | grep -E 'vpa--|overlay--'"},
		{"", "data plane    iptables (upstream's chains", "ip netns exec c1 iptables-save | grep -E 'asg-'"},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			st := &State{Dir: t.TempDir(), Bins: "/tmp/bin", Plan: Plan{Prefix: "10.244.0.", Backend: tc.backend},
				Cells:  []CellState{{Index: 1, NS: "c1"}, {Index: 2, NS: "c2"}},
				Apps:   []AppState{{Name: "frontend", NS: "fe", Cell: 1}, {Name: "backend", NS: "be", Cell: 2, IP: "10.255.1.2", Port: 8080}},
				Egress: &EgressState{Service: "10.244.0.1:9443", Caller: Caller{Calls: "http://10.244.0.1:9443/"}}}
			if err := st.Save(); err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			if err := Status(st.Dir, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.status) {
				t.Errorf("status lacks %q:\n%s", tc.status, out.String())
			}
			if tour := st.Tour(); !strings.Contains(tour, tc.tour) {
				t.Errorf("tour lacks %q:\n%s", tc.tour, tour)
			}
			r := Report{DataPlane: st.Plan.backend(), Frontend: st.Apps[0], Backend: st.Apps[1]}
			if want := "data plane        " + dataPlane(st.Plan.backend()); !strings.Contains(r.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, r.String())
			}
		})
	}
}
