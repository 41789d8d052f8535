package iptableslogger

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"

	"github.com/netman-release/netman/src/testsupport/logtest"
)

// destroyMessage is a conntrack DESTROY event as the kernel multicasts it
// with accounting and timestamps on: the tuples, status, mark, id, both
// counters and the timestamps (CTA_* numbers from the kernel's
// nfnetlink_conntrack.h).
func destroyMessage(tb testing.TB, src, dst netip.Addr, sport, dport uint16, start, stop time.Time) netlink.Message {
	tb.Helper()
	tuple := func(typ uint16, s, d netip.Addr, sp, dp uint16) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Nested: true, Children: []netfilter.Attribute{{Type: 1, Data: s.AsSlice()}, {Type: 2, Data: d.AsSlice()}}},
			{Type: 2, Nested: true, Children: []netfilter.Attribute{
				{Type: 1, Data: []byte{6}}, {Type: 2, Data: netfilter.Uint16Bytes(sp)}, {Type: 3, Data: netfilter.Uint16Bytes(dp)},
			}},
		}}
	}
	counters := func(typ uint16, packets, bytes uint64) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Data: netfilter.Uint64Bytes(packets)}, {Type: 2, Data: netfilter.Uint64Bytes(bytes)},
		}}
	}
	msg, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: 2, Family: netfilter.ProtoIPv4, // IPCTNL_MSG_CT_DELETE
	}, []netfilter.Attribute{
		tuple(1, src, dst, sport, dport),                // CTA_TUPLE_ORIG
		tuple(2, dst, src, dport, sport),                // CTA_TUPLE_REPLY
		{Type: 3, Data: netfilter.Uint32Bytes(0x19e)},   // CTA_STATUS
		{Type: 8, Data: netfilter.Uint32Bytes(0)},       // CTA_MARK
		{Type: 12, Data: netfilter.Uint32Bytes(0x5eed)}, // CTA_ID
		counters(9, 6, 412),                             // CTA_COUNTERS_ORIG
		counters(10, 5, 1268),                           // CTA_COUNTERS_REPLY
		{Type: 20, Nested: true, Children: []netfilter.Attribute{ // CTA_TIMESTAMP
			{Type: 1, Data: netfilter.Uint64Bytes(uint64(start.UnixNano()))},
			{Type: 2, Data: netfilter.Uint64Bytes(uint64(stop.UnixNano()))},
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

// TestDestroyMessageToRecord decodes a DESTROY event as the kernel sends it
// (through the library, as the reader does) into its record.
func TestDestroyMessageToRecord(t *testing.T) {
	c := flowStore(t)
	start := fixedTime.Add(-1500 * time.Millisecond)
	msg := destroyMessage(t, netip.MustParseAddr("10.255.1.2"), netip.MustParseAddr("10.255.1.3"), 41000, 8080, start, fixedTime)
	var ev conntrack.Event
	if err := ev.Unmarshal(msg); err != nil {
		t.Fatal(err)
	}
	if ev.Type != conntrack.EventDestroy {
		t.Fatalf("event type %v", ev.Type)
	}
	fl := NewFlowLog(logtest.New(t), TimestampRFC3339, 10, 10, fixedClock)
	got := fl.Append(nil, c, FlowFromConntrack(ev.Flow, time.Time{}, fixedTime))
	want := AppendFlow(nil, fixedTime, TimestampRFC3339, Flow{
		Verdict: VerdictAllowed, SrcIP: "10.255.1.2", DstIP: "10.255.1.3", SrcPort: 41000, DstPort: 8080, Protocol: "TCP",
		SrcPackets: 6, SrcBytes: 412, DstPackets: 5, DstBytes: 1268, DurationMS: 1500,
	}, front, back)
	if string(got) != string(want) {
		t.Errorf("record\n%s\nwant\n%s", got, want)
	}
}

// BenchmarkFlowEventToRecord is the CPU cost of one connection's flow
// record on the reader's side: decode the DESTROY event's netlink message,
// convert it, join both ends with a store of 250 containers, rate-limit,
// encode, and write in batches of 64 (a busy cell's batches) to a sink.
// With conntrack timestamps on, that is the whole per-connection work: NEW
// events are not subscribed.
func BenchmarkFlowEventToRecord(b *testing.B) {
	store := benchStore(b)
	c := NewContainers(store, "10.0.16.5", "cell-guid")
	fl := NewFlowLog(logtest.New(b), TimestampRFC3339, 1<<30, 1<<30, nil)
	r := NewConntrackReader(logtest.New(b), fl, c, io.Discard, nil, nil, nil)
	msgs := make([]netlink.Message, 250)
	now := time.Now()
	for i := range msgs {
		src := netip.AddrFrom4([4]byte{10, 255, 18, byte(2 + i)})
		dst := netip.AddrFrom4([4]byte{10, 255, 18, byte(2 + (i+7)%250)})
		msgs[i] = destroyMessage(b, src, dst, uint16(30000+i), 8080, now.Add(-time.Second), now)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		var ev conntrack.Event
		if err := ev.Unmarshal(msgs[i%len(msgs)]); err != nil {
			b.Fatal(err)
		}
		r.handle(ctx, ev)
		if i%64 == 63 {
			r.flush()
		}
	}
	b.StopTimer()
	perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	// Share of one core at 1,000 new connections a second.
	b.ReportMetric(perOp*1000/1e9*100, "%core@1k/s")
}
