package iptableslogger

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/golden"
)

// goldenEvents are the kernel lines of the parse tests, with the container
// each matches (or none), as the output file must show them.
func goldenEvents(t *testing.T) []struct {
	p Packet
	c Container
} {
	t.Helper()
	app := Container{
		ContainerID: "9b2f1c3a-4d5e-4f60-8a7b-1c2d3e4f5a6b", AppGUID: "2a0f6b8e-app", SpaceGUID: "7c1d-space",
		OrganizationGUID: "org-3e4f", HostIP: "10.0.16.5", HostGUID: "cell-guid-1",
	}
	unknown := Container{HostIP: "10.0.16.5", HostGUID: "cell-guid-1"}
	var out []struct {
		p Packet
		c Container
	}
	for i, line := range []string{
		syslogIngressAllowedTCP, syslogIngressDeniedTCP, syslogEgressAllowedTCP, syslogEgressDeniedUDP,
		syslogEgressDeniedICMP, syslogRateLimited, rsyslogRFC3339, kmsgIngressAllowedTCP, kmsgEgressDeniedTCP,
	} {
		p, err := Parse(line)
		if err != nil {
			t.Fatal(err)
		}
		c := app
		if i%3 == 2 {
			c = unknown
		}
		out = append(out, struct {
			p Packet
			c Container
		}{p, c})
	}
	return out
}

func TestAppendEventGolden(t *testing.T) {
	at := time.Date(2026, 11, 23, 10, 0, 0, 123456789, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		format TimestampFormat
		file   string
	}{
		{TimestampRFC3339, "events-rfc3339.golden"},
		{TimestampDeprecated, "events-deprecated.golden"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var got []byte
			for _, e := range goldenEvents(t) {
				line := AppendEvent(nil, at, tc.format, e.p, e.c)
				if want := lagerLine(t, at, tc.format, e.p, e.c); !bytes.Equal(line, want) {
					t.Errorf("differs from lager:\n got %s\nwant %s", line, want)
				}
				got = append(got, line...)
			}
			golden.Check(t, filepath.Join("testdata", tc.file), got)
		})
	}
}

// TestEventShape pins upstream's JSON shape independently of lager: the
// fields upstream's integration test expects, with their JSON types.
func TestEventShape(t *testing.T) {
	at := time.Unix(1700000000, 5e8)
	p := Packet{Direction: Egress, Allowed: false, SrcIP: "10.255.0.1", DstIP: "10.10.10.10", SrcPort: 45564, DstPort: 25555, Protocol: "UDP", Mark: "0x1"}
	c := Container{ContainerID: "h", AppGUID: "a", SpaceGUID: "s", OrganizationGUID: "o", HostIP: "1.2.3.4", HostGUID: "g"}
	var got map[string]any
	if err := json.Unmarshal(AppendEvent(nil, at, TimestampDeprecated, p, c), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"timestamp": "1700000000.500000000",
		"source":    "cfnetworking.iptables",
		"message":   "cfnetworking.iptables.egress-denied",
		"log_level": 1.0,
		"data": map[string]any{
			"source": map[string]any{
				"container_id": "h", "app_guid": "a", "space_guid": "s", "organization_guid": "o",
				"host_ip": "1.2.3.4", "host_guid": "g",
			},
			"packet": map[string]any{
				"direction": "egress", "allowed": false, "src_ip": "10.255.0.1", "src_port": 45564.0,
				"dst_ip": "10.10.10.10", "dst_port": 25555.0, "protocol": "UDP", "mark": "0x1",
				"icmp_code": 0.0, "icmp_type": 0.0,
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}

	p.Direction, p.Allowed = Ingress, true
	got = nil
	if err := json.Unmarshal(AppendEvent(nil, at, TimestampRFC3339, p, c), &got); err != nil {
		t.Fatal(err)
	}
	if got["timestamp"] != "2023-11-14T22:13:20.500000000Z" || got["level"] != "info" || got["message"] != "cfnetworking.iptables.ingress-allowed" {
		t.Errorf("rfc3339 event = %v", got)
	}
	if _, ok := got["data"].(map[string]any)["destination"]; !ok {
		t.Errorf("ingress event has no destination: %v", got)
	}
}

func TestAppendEventAllocatesNothing(t *testing.T) {
	p, _ := Parse(syslogIngressAllowedTCP)
	c := Container{ContainerID: "h", HostIP: "10.0.0.1", HostGUID: "g"}
	buf := make([]byte, 0, 4096)
	at := time.Now()
	for _, f := range []TimestampFormat{TimestampDeprecated, TimestampRFC3339} {
		if n := testing.AllocsPerRun(100, func() { buf = AppendEvent(buf[:0], at, f, p, c) }); n != 0 {
			t.Errorf("format %v: %v allocations", f, n)
		}
	}
}

func TestAppendRFC3339(t *testing.T) {
	const layout = "2006-01-02T15:04:05.000000000Z07:00"
	for _, at := range []time.Time{
		time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(7, 2, 3, 4, 5, 6, 7, time.UTC),
	} {
		if got, want := string(appendRFC3339(nil, at)), at.Format(layout); got != want {
			t.Errorf("appendRFC3339(%v) = %s, want %s", at, got, want)
		}
	}
}
