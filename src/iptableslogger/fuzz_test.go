package iptableslogger

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"
)

// referenceParse is the spec of Parse written the obvious way (upstream's
// algorithm): split with strings.Fields, collect KEY=VALUE into a map, first
// occurrence wins. Parse must agree with it on every line it accepts.
func referenceParse(line string) Packet {
	data := map[string]string{}
	for _, w := range strings.Fields(line) {
		if k, v, ok := strings.Cut(w, "="); ok {
			if _, seen := data[k]; !seen {
				data[k] = v
			}
		}
	}
	atoi := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0
		}
		return n
	}
	dir := Egress
	if strings.Contains(data["OUT"], "s-") {
		dir = Ingress
	}
	return Packet{
		Direction: dir, Allowed: strings.Contains(line, "OK_"),
		SrcIP: data["SRC"], DstIP: data["DST"],
		SrcPort: atoi(data["SPT"]), DstPort: atoi(data["DPT"]),
		Protocol: data["PROTO"], Mark: data["MARK"],
		ICMPType: atoi(data["TYPE"]), ICMPCode: atoi(data["CODE"]),
	}
}

// FuzzParse checks Parse against the reference on arbitrary lines: it never
// panics, accepts exactly the relevant lines with valid SRC and DST, and
// then returns what upstream's algorithm returns.
func FuzzParse(f *testing.F) {
	for _, l := range []string{
		syslogIngressAllowedTCP, syslogEgressDeniedICMP, rsyslogRFC3339, kmsgIngressAllowedTCP, kmsgIPv6,
		"OK_ SRC=1.1.1.1 DST=2.2.2.2 SPT=+9 DPT=-0", "DENY_\u00a0SRC=1.1.1.1\u0085DST=::1 OUT=s-\xff",
	} {
		f.Add(l)
	}
	f.Fuzz(func(t *testing.T, line string) {
		got, err := Parse(line)
		relevant := strings.Contains(line, "OK_") || strings.Contains(line, "DENY_")
		if Relevant([]byte(line)) != relevant {
			t.Fatalf("Relevant disagrees with the spec")
		}
		ref := referenceParse(line)
		_, srcErr := netip.ParseAddr(ref.SrcIP)
		_, dstErr := netip.ParseAddr(ref.DstIP)
		switch {
		case !relevant:
			if !errors.Is(err, ErrIrrelevant) {
				t.Fatalf("irrelevant line: err = %v", err)
			}
		case srcErr != nil || dstErr != nil:
			if !errors.Is(err, ErrNoAddresses) {
				t.Fatalf("line without addresses: err = %v, packet %+v", err, got)
			}
		default:
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			if diff := cmp.Diff(ref, got); diff != "" {
				t.Fatalf("(-reference +Parse):\n%s", diff)
			}
		}
	})
}

// lagerLine is what upstream writes for the event: lager's own sinks, fed
// the same time, source, message and data.
func lagerLine(t testing.TB, at time.Time, format TimestampFormat, p Packet, c Container) []byte {
	t.Helper()
	var buf bytes.Buffer
	sink, stamp := lagerSink(&buf, at, format)
	key := "source"
	if p.Direction == Ingress {
		key = "destination"
	}
	sink.Log(lager.LogFormat{
		Timestamp: stamp,
		Source:    Source,
		Message:   Message(p),
		LogLevel:  lager.INFO,
		Data:      lager.Data{key: c, "packet": p},
	})
	return buf.Bytes()
}

// lagerSink is the lager sink of a timestamp format writing to buf, and the
// timestamp lager gives it for at.
func lagerSink(buf *bytes.Buffer, at time.Time, format TimestampFormat) (lager.Sink, string) {
	if format == TimestampRFC3339 {
		// The pretty sink reads the exact time back from "<sec>.<nsec>".
		return lager.NewPrettySink(buf, lager.DEBUG), fmt.Sprintf("%d.%09d", at.Unix(), at.Nanosecond())
	}
	return lager.NewWriterSink(buf, lager.DEBUG), fmt.Sprintf("%.9f", float64(at.UnixNano())/1e9) // lager's formatTimestamp
}

// FuzzAppendEvent checks the hand-written encoder against lager byte for
// byte, whatever the strings hold.
func FuzzAppendEvent(f *testing.F) {
	f.Add(int64(1700000000123456789), true, "ingress", true, "10.255.0.1", "10.255.0.2", 1, 2, "TCP", "0x1", 0, 0, "handle", "app", "space", "org", "10.0.0.1", "guid")
	f.Add(int64(-5), false, "egress", false, "<&>", "\"\\\b\f\n\r\t\x00\x1f\x7f", -1, 1<<40, "\u2028\u2029", "\xff\xfe", 3, 4, "é", "日本", "", "\U0001F600", "a\u00a0b", "x")
	f.Fuzz(func(t *testing.T, nanos int64, rfc bool, dir string, allowed bool, src, dst string, sport, dport int, proto, mark string, typ, code int, id, app, space, org, hostIP, hostGUID string) {
		if nanos < 0 {
			return // lager's pretty sink cannot read back times before 1970
		}
		at := time.Unix(0, nanos)
		format := TimestampDeprecated
		if rfc {
			format = TimestampRFC3339
		}
		p := Packet{dir, allowed, src, dst, sport, dport, proto, mark, typ, code}
		c := Container{id, app, space, org, hostIP, hostGUID}
		got := AppendEvent(nil, at, format, p, c)
		want := lagerLine(t, at, format, p, c)
		if !bytes.Equal(got, want) {
			t.Fatalf("encoder differs from lager:\n got %s\nwant %s", got, want)
		}
	})
}

// FuzzParseKmsg checks the record splitter never panics and keeps its
// promises.
func FuzzParseKmsg(f *testing.F) {
	f.Add([]byte("4,344,1062372755,-;OK_0005_x IN= OUT=s-a SRC=10.255.77.1 DST=10.255.77.2 \n"))
	f.Add([]byte("6,1,2,-;msg\n SUBSYSTEM=net\n DEVICE=n2\n"))
	f.Add([]byte("12,3,4,c,caller=T1;from userspace"))
	f.Fuzz(func(t *testing.T, rec []byte) {
		k, ok := ParseKmsg(rec)
		if !ok {
			return
		}
		if bytes.IndexByte(k.Message, '\n') >= 0 {
			t.Fatalf("message holds a newline: %q", k.Message)
		}
		semi := bytes.IndexByte(rec, ';')
		if !bytes.HasPrefix(rec[semi+1:], k.Message) {
			t.Fatalf("message %q is not the text after the header", k.Message)
		}
		prio, err := strconv.ParseUint(string(rec[:bytes.IndexByte(rec, ',')]), 10, 64)
		if err != nil {
			t.Fatalf("accepted priority %q", rec)
		}
		if k.Kernel != (prio < 8) {
			t.Fatalf("kernel = %v for priority %d", k.Kernel, prio)
		}
	})
}
