package c2c

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// goldenRules compares rules, as the chain lists them, with testdata/<name>.rules.
func goldenRules(t *testing.T, name string, got []iptables.Rule) {
	t.Helper()
	var b strings.Builder
	for _, r := range got {
		b.WriteString("-A vpa--1700000000000000 " + string(r) + "\n")
	}
	golden.Check(t, filepath.Join("testdata", name+".rules"), []byte(b.String()))
}

// Apps on the cell: A (two instances), B, C; D runs elsewhere.
var cell = []Container{
	{Handle: "h-a1", IP: "10.255.1.2", AppID: "app-a", SpaceID: "space-1", Ports: "8080", Workload: "app"},
	{Handle: "h-a2", IP: "10.255.1.3", AppID: "app-a", SpaceID: "space-1", Ports: "8080, 9090", Workload: "app"},
	{Handle: "h-b1", IP: "10.255.1.4", AppID: "app-b", SpaceID: "space-1", Ports: "8080", Workload: "app"},
	{Handle: "h-c1", IP: "10.255.1.10", AppID: "app-c", SpaceID: "space-2", Workload: "task"},
}

func pol(src, srcTag, dst, dstTag, proto string, start, end int) Policy {
	return Policy{Source: Endpoint{ID: src, Tag: srcTag}, Destination: Destination{ID: dst, Tag: dstTag, Protocol: proto, Start: start, End: end}}
}

var policies = []Policy{
	pol("app-a", "0001", "app-b", "0002", "tcp", 8080, 8080),
	pol("app-a", "0001", "app-b", "0002", "udp", 5000, 5010),
	pol("app-d", "0004", "app-a", "0001", "tcp", 9000, 9100),
	pol("app-b", "0002", "app-d", "0004", "tcp", 443, 443),
	pol("app-c", "0003", "app-a", "0001", "tcp", 8080, 8080),
	pol("app-x", "0009", "app-y", "000A", "tcp", 1, 65535), // neither end here
}

func TestPlanGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   Inputs
	}{
		{"empty", Inputs{}},
		{"containers-no-policies", Inputs{Containers: cell}},
		{"policies", Inputs{Containers: cell, Policies: policies}},
		{"policies-logging", Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 100}},
		{"ingress", Inputs{Containers: cell, Policies: policies[:1], IngressTag: "FFFF"}},
		{"disabled-policy", Inputs{Containers: cell, Policies: policies[:1], DisableNetworkPolicy: true, OverlayNetwork: "10.255.7.7/16"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Plan(tt.in, nil)
			if err != nil {
				t.Fatal(err)
			}
			goldenRules(t, tt.name, got)
		})
	}
}

func TestPlanIsIndependentOfInputOrder(t *testing.T) {
	rev := func(ps []Policy) []Policy {
		out := append([]Policy(nil), ps...)
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out
	}
	a, _ := Plan(Inputs{Containers: cell, Policies: policies, Logging: true, AcceptedUDPLogsPerSec: 10}, nil)
	b, _ := Plan(Inputs{Containers: cell, Policies: rev(policies), Logging: true, AcceptedUDPLogsPerSec: 10}, nil)
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("policy order changed the plan:\n%s", diff)
	}
}

func TestPlanBadPortsMetadataFailsTheCycle(t *testing.T) {
	cs := []Container{{Handle: "h", IP: "10.255.1.2", AppID: "a", Ports: "8080,http"}}
	if _, err := Plan(Inputs{Containers: cs, IngressTag: "FFFF"}, nil); err == nil || !strings.Contains(err.Error(), "converting container metadata port to int") {
		t.Fatalf("got %v", err)
	}
	// Without ingress rules the ports are not read at all.
	if _, err := Plan(Inputs{Containers: cs}, nil); err != nil {
		t.Fatal(err)
	}
}

func TestPlanSkipsUnmatchableEntries(t *testing.T) {
	cs := []Container{{Handle: "h", IP: "not-an-ip", AppID: "a"}, {Handle: "g", IP: "10.255.1.9", AppID: "b"}}
	ps := []Policy{pol("a", "0001", "b", "0002", "icmp", 0, 0), pol("b", "0002", "a", "0001", "tcp", 80, 80)}
	var warnings []string
	got, err := Plan(Inputs{Containers: cs, Policies: ps}, func(msg string, data map[string]any) {
		warnings = append(warnings, fmt.Sprint(msg, data["reason"]))
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []iptables.Rule{`-s 10.255.1.9/32 -m comment --comment "src:b" -j MARK --set-xmark 0x2/0xffffffff`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	// The bad IP is a source and a destination; the icmp policy has no ports.
	if len(warnings) != 3 {
		t.Errorf("warnings %q, want two for the bad IP and one for icmp", warnings)
	}
}

func TestLogPrefixIsCutTo28(t *testing.T) {
	r := AllowLog(mustAddr("10.255.1.2"), "tcp", 80, 80, "0001", "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 1)
	if !strings.Contains(string(r), `--log-prefix "OK_0001_aaaaaaaa-bbbb-cccc-d "`) {
		t.Errorf("prefix not cut to 28 characters: %s", r)
	}
}

func TestManyAppsScaleLinearly(t *testing.T) {
	in := bigInputs(250, 40)
	got, err := Plan(in, nil)
	if err != nil {
		t.Fatal(err)
	}
	// 250 sources (every container is the source of some policy) and per
	// container 40 inbound policies.
	if want := 250 + 250*40; len(got) != want {
		t.Errorf("planned %d rules, want %d", len(got), want)
	}
}
