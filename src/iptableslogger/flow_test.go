package iptableslogger

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/ti-mo/conntrack"

	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/logtest"
)

// lagerFlowLine is what lager writes for a flow record given the same time,
// message and data.
func lagerFlowLine(t testing.TB, at time.Time, format TimestampFormat, f Flow, src, dst Endpoint) []byte {
	t.Helper()
	var buf bytes.Buffer
	sink, stamp := lagerSink(&buf, at, format)
	sink.Log(lager.LogFormat{
		Timestamp: stamp, Source: Source, Message: FlowMessage(f.Verdict), LogLevel: lager.INFO,
		Data: lager.Data{"source": src, "destination": dst, "flow": f},
	})
	return buf.Bytes()
}

// FuzzAppendFlow checks the flow record encoder against lager byte for
// byte, whatever the strings and numbers hold.
func FuzzAppendFlow(f *testing.F) {
	f.Add(int64(1700000000123456789), true, "allowed", "10.255.0.1", "10.255.0.2", 1, 2, "TCP", uint64(5), uint64(300), uint64(4), uint64(9000), int64(1500), "h", "app", "name", "10.0.0.1")
	f.Add(int64(7), false, "<denied>", "\"\\\b\x00", "\u2028", -1, 1<<40, "\xff", uint64(1)<<63, uint64(0), uint64(1), uint64(2), int64(-3), "é", "日本", "\U0001F600", "")
	f.Fuzz(func(t *testing.T, nanos int64, rfc bool, verdict, src, dst string, sport, dport int, proto string, sp, sb, dp, db uint64, dur int64, id, app, name, hostIP string) {
		if nanos < 0 {
			return
		}
		at := time.Unix(0, nanos)
		format := TimestampDeprecated
		if rfc {
			format = TimestampRFC3339
		}
		fl := Flow{verdict, src, dst, sport, dport, proto, sport % 256, dport % 256, sp, sb, dp, db, dur}
		s := Endpoint{id, app, app + "s", app + "o", name, name + "s", name + "o", hostIP, id + "g"}
		d := Endpoint{HostIP: hostIP}
		got := AppendFlow(nil, at, format, fl, s, d)
		if want := lagerFlowLine(t, at, format, fl, s, d); !bytes.Equal(got, want) {
			t.Fatalf("encoder differs from lager:\n got %s\nwant %s", got, want)
		}
	})
}

func TestFlowFromConntrack(t *testing.T) {
	end := time.Date(2026, 12, 6, 12, 0, 10, 0, time.UTC)
	tcp := conntrack.NewFlow(6, 0, netip.MustParseAddr("10.255.1.2"), netip.MustParseAddr("10.255.2.2"), 40000, 8080, 0, 0)
	tcp.CountersOrig = conntrack.Counter{Packets: 6, Bytes: 400}
	tcp.CountersReply = conntrack.Counter{Direction: true, Packets: 5, Bytes: 9000}
	// After masquerading the reply goes to the host: the original tuple
	// keeps the container's address.
	tcp.TupleReply.IP.DestinationAddress = netip.MustParseAddr("10.0.16.5")
	withStamps := tcp
	withStamps.Timestamp = conntrack.Timestamp{Start: end.Add(-2500 * time.Millisecond), Stop: end.Add(-500 * time.Millisecond)}
	startOnly := tcp
	startOnly.Timestamp.Start = end.Add(-3 * time.Second)
	icmp := conntrack.NewFlow(1, 0, netip.MustParseAddr("10.255.1.2"), netip.MustParseAddr("192.0.2.1"), 0, 0, 0, 0)
	icmp.TupleOrig.Proto.ICMPv4, icmp.TupleOrig.Proto.ICMPType, icmp.TupleOrig.Proto.ICMPID = true, 8, 77
	mapped := conntrack.NewFlow(17, 0, netip.MustParseAddr("::ffff:10.255.1.2"), netip.MustParseAddr("fd00::1"), 5353, 53, 0, 0)
	other := conntrack.NewFlow(47, 0, netip.MustParseAddr("10.255.1.2"), netip.MustParseAddr("10.255.2.2"), 0, 0, 0, 0)

	base := Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "10.255.2.2", SrcPort: 40000, DstPort: 8080, Protocol: "TCP",
		SrcPackets: 6, SrcBytes: 400, DstPackets: 5, DstBytes: 9000}
	with := func(ms int64) Flow { f := base; f.DurationMS = ms; return f }
	for _, tc := range []struct {
		name    string
		flow    conntrack.Flow
		started time.Time
		want    Flow
	}{
		{"conntrack timestamps", withStamps, end.Add(-time.Hour), with(2000)},
		{"start stamp only: until now", startOnly, time.Time{}, with(3000)},
		{"no stamps: since the NEW event", tcp, end.Add(-1200 * time.Millisecond), with(1200)},
		{"no stamps, no NEW seen", tcp, time.Time{}, with(0)},
		{"clock went back", tcp, end.Add(time.Second), with(0)},
		{"ICMP: type and code, no ports", icmp, time.Time{}, Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "192.0.2.1", Protocol: "ICMP", ICMPType: 8}},
		{"IPv4-mapped address, IPv6", mapped, time.Time{}, Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "fd00::1", SrcPort: 5353, DstPort: 53, Protocol: "UDP"}},
		{"other protocol by number", other, time.Time{}, Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "10.255.2.2", Protocol: "47"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, FlowFromConntrack(&tc.flow, tc.started, end)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestFlowFromDenied(t *testing.T) {
	for _, tc := range []struct {
		line string
		want Flow
	}{
		{syslogEgressDeniedUDP, Flow{Verdict: VerdictDenied, SrcIP: "10.255.18.2", DstIP: "10.0.0.53", SrcPort: 40000, DstPort: 53, Protocol: "UDP", SrcPackets: 1, SrcBytes: 29}},
		{kmsgEgressDeniedTCP, Flow{Verdict: VerdictDenied, SrcIP: "10.255.77.2", DstIP: "10.255.77.1", SrcPort: 40001, DstPort: 9999, Protocol: "TCP", SrcPackets: 1, SrcBytes: 60}},
		{syslogEgressDeniedICMP, Flow{Verdict: VerdictDenied, SrcIP: "10.255.18.2", DstIP: "10.0.0.1", Protocol: "ICMP", ICMPType: 8, SrcPackets: 1, SrcBytes: 84}},
		{"DENY_x SRC=10.0.0.1 DST=10.0.0.2 LEN=", Flow{Verdict: VerdictDenied, SrcIP: "10.0.0.1", DstIP: "10.0.0.2", SrcPackets: 1}},
		{"DENY_x SRC=10.0.0.1 DST=10.0.0.2 LEN=-4 PROTO=TCP", Flow{Verdict: VerdictDenied, SrcIP: "10.0.0.1", DstIP: "10.0.0.2", Protocol: "TCP", SrcPackets: 1}},
	} {
		p, err := Parse(tc.line)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tc.want, FlowFromDenied(p, tc.line)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tc.line, diff)
		}
	}
}

func TestTokenBucket(t *testing.T) {
	b := NewTokenBucket(10, 3)
	at := fixedTime
	allowed := func(n int) int {
		k := 0
		for range n {
			if b.Allow(at) {
				k++
			}
		}
		return k
	}
	if got := allowed(5); got != 3 {
		t.Errorf("full bucket allowed %d of 5, want the burst, 3", got)
	}
	at = at.Add(250 * time.Millisecond) // 2.5 tokens
	if got := allowed(5); got != 2 {
		t.Errorf("after 250 ms at 10/s allowed %d, want 2", got)
	}
	at = at.Add(50 * time.Millisecond) // 0.5 left + 0.5
	if got := allowed(5); got != 1 {
		t.Errorf("after 50 ms more allowed %d, want 1", got)
	}
	at = at.Add(time.Hour) // capped at the burst
	if got := allowed(10); got != 3 {
		t.Errorf("after an hour allowed %d, want the burst, 3", got)
	}
	at = at.Add(-time.Minute) // a clock going back adds nothing
	if got := allowed(1); got != 0 {
		t.Errorf("clock went back: allowed %d", got)
	}
	// One second at 10/s, in many small steps, allows 10.
	at = at.Add(time.Minute)
	allowed(3)
	n := 0
	for range 100 {
		at = at.Add(10 * time.Millisecond)
		n += allowed(1)
	}
	if n < 9 || n > 11 {
		t.Errorf("one second at 10/s allowed %d", n)
	}
	if NewTokenBucket(0, 0).Allow(at) != true || NewTokenBucket(0, 0).Allow(at.Add(time.Hour)) != true {
		t.Error("a new bucket holds at least one token")
	}
}

// flowStore is a store with two containers of this cell, one with names.
func flowStore(t *testing.T) *Containers {
	t.Helper()
	store := newStore(t)
	addContainer(t, store, "h-front", "10.255.1.2", map[string]any{
		"app_id": "front-guid", "space_id": "space-guid", "org_id": "org-guid",
		metadata.LogConfigKey: `{"guid":"front-guid","index":2,"source_name":"CELL","tags":{"app_name":"front","space_name":"dev","organization_name":"acme"}}`,
	})
	addContainer(t, store, "h-back", "10.255.1.3", map[string]any{"app_id": "back-guid", metadata.LogConfigKey: "not json"})
	c := NewContainers(store, "10.0.16.5", "cell-guid")
	if err := c.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	return c
}

var (
	front = Endpoint{ContainerID: "h-front", AppGUID: "front-guid", SpaceGUID: "space-guid", OrganizationGUID: "org-guid",
		AppName: "front", SpaceName: "dev", OrganizationName: "acme", HostIP: "10.0.16.5", HostGUID: "cell-guid"}
	back = Endpoint{ContainerID: "h-back", AppGUID: "back-guid", HostIP: "10.0.16.5", HostGUID: "cell-guid"}
)

func decodeFlows(t *testing.T, b []byte) []decodedFlow {
	t.Helper()
	var out []decodedFlow
	for l := range strings.Lines(string(b)) {
		var f decodedFlow
		if err := json.Unmarshal([]byte(l), &f); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		f.raw = ""
		out = append(out, f)
	}
	return out
}

func TestFlowLogJoin(t *testing.T) {
	c := flowStore(t)
	sender := newSender(t)
	logger, logs := logtest.NewCapture(t, "iptables-logger")
	fl := NewFlowLog(logger, TimestampRFC3339, 100, 100, fixedClock)
	tcp := Flow{Verdict: VerdictAllowed, DstPort: 8080, Protocol: "TCP", SrcBytes: 1, DstBytes: 2}
	at := func(src, dst string, verdict string) Flow {
		f := tcp
		f.SrcIP, f.DstIP, f.Verdict = src, dst, verdict
		return f
	}
	var buf []byte
	buf = fl.Append(buf, c, at("10.255.1.2", "10.255.1.3", VerdictAllowed)) // both ends on this cell
	buf = fl.Append(buf, c, at("10.255.9.9", "10.255.1.3", VerdictAllowed)) // from another cell
	buf = fl.Append(buf, c, at("10.255.1.2", "192.0.2.1", VerdictDenied))   // to the internet, denied
	buf = fl.Append(buf, c, at("10.0.16.5", "10.0.16.1", VerdictAllowed))   // the host's own: no record
	got := decodeFlows(t, buf)
	if len(got) != 3 {
		t.Fatalf("%d records, want 3:\n%s", len(got), buf)
	}
	for i, want := range []struct {
		msg      string
		src, dst Endpoint
	}{
		{"cfnetworking.iptables.flow-allowed", front, back},
		{"cfnetworking.iptables.flow-allowed", Endpoint{}, back},
		{"cfnetworking.iptables.flow-denied", front, Endpoint{}},
	} {
		if got[i].Message != want.msg || got[i].Source != "cfnetworking.iptables" || got[i].Timestamp != "2026-11-23T10:00:00.000000000Z" {
			t.Errorf("record %d: %s %s %s", i, got[i].Timestamp, got[i].Source, got[i].Message)
		}
		if diff := cmp.Diff(&want.src, got[i].Data.Source); diff != "" {
			t.Errorf("record %d source (-want +got):\n%s", i, diff)
		}
		if diff := cmp.Diff(&want.dst, got[i].Data.Destination); diff != "" {
			t.Errorf("record %d destination (-want +got):\n%s", i, diff)
		}
	}
	fl.Flush(sender)
	if a, d := counter(sender, MetricFlowsAllowed), counter(sender, MetricFlowsDenied); a != 2 || d != 1 {
		t.Errorf("allowed %d, denied %d; want 2, 1", a, d)
	}
	if n := counter(sender, MetricFlowRecordsDropped); n != 0 || len(logs.Find("iptables-logger.flow-records-dropped")) != 0 {
		t.Errorf("dropped %d with nothing over the limit", n)
	}
}

func TestFlowLogRateLimit(t *testing.T) {
	c := flowStore(t)
	sender := newSender(t)
	logger, logs := logtest.NewCapture(t, "iptables-logger")
	now := fixedTime
	fl := NewFlowLog(logger, TimestampDeprecated, 2, 5, func() time.Time { return now })
	f := Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "10.255.1.3"}
	var buf []byte
	for range 8 {
		buf = fl.Append(buf, c, f)
	}
	if n := bytes.Count(buf, []byte("\n")); n != 5 {
		t.Errorf("%d records from a burst of 8, want 5", n)
	}
	fl.Flush(sender)
	if n := counter(sender, MetricFlowRecordsDropped); n != 3 {
		t.Errorf("dropped counter %d, want 3", n)
	}
	if n := counter(sender, MetricFlowsAllowed); n != 8 {
		t.Errorf("allowed counter %d, want all 8 flows", n)
	}
	l := logs.Find("iptables-logger.flow-records-dropped")
	if len(l) != 1 || l[0].Data["dropped"] != 3.0 || l[0].Data["flow_logs_per_sec"] != 2.0 {
		t.Fatalf("drop logs %v", l)
	}
	// Within 10 s the next drops are counted but not logged yet.
	now = now.Add(time.Second) // 2 tokens
	buf = buf[:0]
	for range 4 {
		buf = fl.Append(buf, c, f)
	}
	fl.Flush(sender)
	if n := bytes.Count(buf, []byte("\n")); n != 2 || counter(sender, MetricFlowRecordsDropped) != 5 {
		t.Errorf("after 1 s: %d records, dropped counter %d; want 2, 5", n, counter(sender, MetricFlowRecordsDropped))
	}
	if len(logs.Find("iptables-logger.flow-records-dropped")) != 1 {
		t.Error("drops logged again within 10 s")
	}
	now = now.Add(10 * time.Second)
	fl.Flush(sender)
	l = logs.Find("iptables-logger.flow-records-dropped")
	if len(l) != 2 || l[1].Data["dropped"] != 2.0 {
		t.Errorf("drop logs after 10 s: %v", l)
	}
	fl.Lost()
	fl.Flush(sender)
	if n := counter(sender, MetricFlowEventsLost); n != 1 {
		t.Errorf("lost counter %d", n)
	}
}

func TestContainersLocalKeepsRemovedContainers(t *testing.T) {
	ctx := context.Background()
	store := newStore(t)
	addContainer(t, store, "h-old", "10.255.1.9", map[string]any{"app_id": "old"})
	c := NewContainers(store, "10.0.16.5", "cell-guid")
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := store.Delete(ctx, "h-old"); err != nil {
		t.Fatal(err)
	}
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The packet events know it no more; a flow that ends after its
	// container went still names it.
	if got := c.Lookup("10.255.1.9"); got.AppGUID != "" {
		t.Errorf("Lookup of a removed container = %+v", got)
	}
	if ep, ok := c.Local("10.255.1.9"); !ok || ep.AppGUID != "old" || ep.ContainerID != "h-old" {
		t.Errorf("Local of a just-removed container = %+v, %v", ep, ok)
	}
	// A new container with the address wins.
	addContainer(t, store, "h-new", "10.255.1.9", map[string]any{"app_id": "new"})
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if ep, ok := c.Local("10.255.1.9"); !ok || ep.AppGUID != "new" {
		t.Errorf("Local after the address was reused = %+v, %v", ep, ok)
	}
	// Expired removals are forgotten.
	c.gone["10.255.1.10"] = goneEntry{entry: entry{Container: Container{AppGUID: "older"}}, at: time.Now().Add(-goneGrace - time.Second)}
	if ep, ok := c.Local("10.255.1.10"); ok {
		t.Errorf("Local of a container removed long ago = %+v", ep)
	}
}

func TestProcessorWritesDeniedFlows(t *testing.T) {
	c := flowStore(t)
	sender := newSender(t)
	out := &countingWriter{}
	fl := NewFlowLog(logtest.New(t), TimestampRFC3339, 100, 100, fixedClock)
	p := NewProcessor(logtest.New(t), c, out, TimestampRFC3339, fixedClock, sender).WithFlows(fl)
	ctx := context.Background()
	p.Line(ctx, []byte("4,1,2,-;DENY_C2C_x IN=s-a OUT=s-b SRC=10.255.1.2 DST=10.255.1.3 LEN=60 PROTO=TCP SPT=5 DPT=8080 SYN"))
	p.Line(ctx, []byte("4,1,2,-;OK_0001_x IN=s-a OUT=s-b SRC=10.255.1.2 DST=10.255.1.3 LEN=60 PROTO=TCP SPT=6 DPT=8080 SYN"))
	p.Flush()
	lines := strings.Split(strings.TrimSpace(out.all()), "\n")
	var msgs []string
	for _, l := range lines {
		var e struct{ Message string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, e.Message)
	}
	want := []string{"cfnetworking.iptables.ingress-denied", "cfnetworking.iptables.flow-denied", "cfnetworking.iptables.ingress-allowed"}
	if diff := cmp.Diff(want, msgs); diff != "" {
		t.Fatalf("messages (-want +got):\n%s", diff)
	}
	wantFlow := string(AppendFlow(nil, fixedTime, TimestampRFC3339,
		Flow{Verdict: VerdictDenied, SrcIP: "10.255.1.2", DstIP: "10.255.1.3", SrcPort: 5, DstPort: 8080, Protocol: "TCP", SrcPackets: 1, SrcBytes: 60},
		front, back))
	if lines[1]+"\n" != wantFlow {
		t.Errorf("flow record\n%s\nwant\n%s", lines[1], wantFlow)
	}
	if n := counter(sender, MetricFlowsDenied); n != 1 {
		t.Errorf("denied counter %d", n)
	}
}

// TestConntrackReaderJoinsNewAndDestroy feeds the reader events as the
// kernel sends them when conntrack timestamps are off: the duration comes
// from the NEW event, and flows of no local container leave no record.
func TestConntrackReaderJoinsNewAndDestroy(t *testing.T) {
	c := flowStore(t)
	sender := newSender(t)
	out := &countingWriter{}
	now := fixedTime
	clock := func() time.Time { return now }
	fl := NewFlowLog(logtest.New(t), TimestampRFC3339, 100, 100, clock)
	r := NewConntrackReader(logtest.New(t), fl, c, out, sender, nil, clock)
	r.useStarts = true
	ctx := context.Background()

	mine := conntrack.NewFlow(6, 0, netip.MustParseAddr("10.255.1.2"), netip.MustParseAddr("10.255.7.2"), 41000, 8080, 0, 0)
	mine.ID = 7
	host := conntrack.NewFlow(6, 0, netip.MustParseAddr("10.0.16.5"), netip.MustParseAddr("10.0.16.1"), 41001, 22, 0, 0)
	host.ID = 8
	r.handle(ctx, conntrack.Event{Type: conntrack.EventNew, Flow: &mine})
	r.handle(ctx, conntrack.Event{Type: conntrack.EventNew, Flow: &host})
	if len(r.starts) != 1 {
		t.Errorf("starts %v: want only the container's flow", r.starts)
	}
	r.flush()
	now = now.Add(1500 * time.Millisecond)
	ended := mine
	ended.CountersOrig, ended.CountersReply = conntrack.Counter{Packets: 3, Bytes: 200}, conntrack.Counter{Direction: true, Packets: 2, Bytes: 1200}
	r.handle(ctx, conntrack.Event{Type: conntrack.EventDestroy, Flow: &ended})
	r.handle(ctx, conntrack.Event{Type: conntrack.EventDestroy, Flow: &host})
	r.handle(ctx, conntrack.Event{Type: conntrack.EventUpdate, Flow: &mine})
	r.flush()
	got := decodeFlows(t, []byte(out.all()))
	if len(got) != 1 || len(out.writes) != 1 {
		t.Fatalf("%d records in %d writes, want 1 in 1:\n%s", len(got), len(out.writes), out.all())
	}
	want := Flow{Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "10.255.7.2", SrcPort: 41000, DstPort: 8080, Protocol: "TCP",
		SrcPackets: 3, SrcBytes: 200, DstPackets: 2, DstBytes: 1200, DurationMS: 1500}
	if diff := cmp.Diff(want, got[0].Data.Flow); diff != "" {
		t.Errorf("flow (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&front, got[0].Data.Source); diff != "" {
		t.Errorf("source (-want +got):\n%s", diff)
	}
	if len(r.starts) != 0 {
		t.Errorf("starts left after DESTROY: %v", r.starts)
	}
	if n := counter(sender, MetricFlowsAllowed); n != 1 {
		t.Errorf("allowed counter %d", n)
	}
}
