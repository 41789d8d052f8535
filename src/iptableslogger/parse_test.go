package iptableslogger

import (
	"errors"
	"math"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Kernel log lines as they reach the logger. The syslog ones are what
// rsyslog writes to /var/log/kern.log (classic and RFC 3339 timestamps); the
// kmsg ones are /dev/kmsg messages (no timestamp; the LOG target leaves a
// trailing space).
const (
	syslogIngressAllowedTCP = "Nov 23 10:00:00 cell-7 kernel: [12345.678901] OK_0001_9b2f1c3a-4d5e-4f60-8 IN=silk-vtep OUT=s-010255018002 MAC=ee:ee:0a:ff:12:00:aa:aa:0a:ff:11:00:08:00 SRC=10.255.17.2 DST=10.255.18.2 LEN=60 TOS=0x00 PREC=0x00 TTL=62 ID=4242 DF PROTO=TCP SPT=41234 DPT=8080 WINDOW=64240 RES=0x00 SYN URGP=0 MARK=0x1"
	syslogIngressDeniedTCP  = "Nov 23 10:00:01 cell-7 kernel: [12346.000001] DENY_C2C_5c3e8d1f-2a4b-4c6d- IN=silk-vtep OUT=s-010255018002 MAC=ee:ee:0a:ff:12:00:aa:aa:0a:ff:11:00:08:00 SRC=10.255.17.2 DST=10.255.18.2 LEN=60 TOS=0x00 PREC=0x00 TTL=62 ID=4243 DF PROTO=TCP SPT=41236 DPT=9090 WINDOW=64240 RES=0x00 SYN URGP=0 MARK=0x1"
	syslogEgressAllowedTCP  = "Nov 23 10:00:02 cell-7 kernel: [12347.100000] OK_5c3e8d1f-2a4b-4c6d-7e8f-9 IN=s-010255018002 OUT=eth0 MAC=aa:aa:0a:ff:12:02:ee:ee:0a:ff:12:02:08:00 SRC=10.255.18.2 DST=140.82.112.3 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=5150 DF PROTO=TCP SPT=53100 DPT=443 WINDOW=64240 RES=0x00 SYN URGP=0"
	syslogEgressDeniedUDP   = "Nov 23 10:00:03 cell-7 kernel: [12348.200000] DENY_5c3e8d1f-2a4b-4c6d-7e8f IN=s-010255018002 OUT=eth0 MAC=aa:aa:0a:ff:12:02:ee:ee:0a:ff:12:02:08:00 SRC=10.255.18.2 DST=10.0.0.53 LEN=29 TOS=0x00 PREC=0x00 TTL=63 ID=777 DF PROTO=UDP SPT=40000 DPT=53 LEN=9"
	syslogEgressDeniedICMP  = "Nov 23 10:00:04 cell-7 kernel: [12349.300000] DENY_5c3e8d1f-2a4b-4c6d-7e8f IN=s-010255018002 OUT=eth0 MAC=aa:aa:0a:ff:12:02:ee:ee:0a:ff:12:02:08:00 SRC=10.255.18.2 DST=10.0.0.1 LEN=84 TOS=0x00 PREC=0x00 TTL=63 ID=31000 DF PROTO=ICMP TYPE=8 CODE=0 ID=12 SEQ=1"
	syslogRateLimited       = "Nov 23 10:00:05 cell-7 kernel: [12350.400000] DENY_ORL_5c3e8d1f-2a4b-4c6d- IN=s-010255018002 OUT=eth0 MAC=aa:aa:0a:ff:12:02:ee:ee:0a:ff:12:02:08:00 SRC=10.255.18.2 DST=192.0.2.10 LEN=60 TOS=0x00 PREC=0x00 TTL=63 ID=1 DF PROTO=TCP SPT=50000 DPT=5432 WINDOW=64240 RES=0x00 SYN URGP=0"
	rsyslogRFC3339          = "2026-11-23T10:00:06.123456+00:00 cell-7 kernel: [12351.500000] OK_0003_1a2b3c4d-5e6f-4a7b-8 IN=silk-vtep OUT=s-010255018003 SRC=10.255.20.4 DST=10.255.18.3 LEN=52 TOS=0x00 PREC=0x00 TTL=62 ID=9 DF PROTO=UDP SPT=5000 DPT=5001 LEN=32 MARK=0x3"
	kmsgIngressAllowedTCP   = "OK_0005_3f9a1c2e IN= OUT=s-010255077002 SRC=10.255.77.1 DST=10.255.77.2 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=14381 DF PROTO=TCP SPT=51602 DPT=8080 WINDOW=64240 RES=0x00 SYN URGP=0 MARK=0x5 "
	kmsgEgressDeniedTCP     = "DENY_3f9a1c2e IN=s-010255077002 OUT=eth0 SRC=10.255.77.2 DST=10.255.77.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40001 DPT=9999 WINDOW=64240 RES=0x00 SYN URGP=0 "
	kmsgIPv6                = "OK_abc IN=s-0102 OUT=eth0 SRC=fd00:0000:0000:0000:0000:0000:0000:0002 DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=63 FLOWLBL=0 PROTO=TCP SPT=1 DPT=2 WINDOW=1 RES=0x00 SYN URGP=0 "
)

func TestParseKernelLines(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want Packet
	}{
		{"syslog ingress allowed (C2C on the destination cell)", syslogIngressAllowedTCP, Packet{
			Direction: Ingress, Allowed: true, SrcIP: "10.255.17.2", DstIP: "10.255.18.2",
			SrcPort: 41234, DstPort: 8080, Protocol: "TCP", Mark: "0x1",
		}},
		{"syslog ingress denied (DENY_C2C_)", syslogIngressDeniedTCP, Packet{
			Direction: Ingress, SrcIP: "10.255.17.2", DstIP: "10.255.18.2",
			SrcPort: 41236, DstPort: 9090, Protocol: "TCP", Mark: "0x1",
		}},
		{"syslog egress allowed (ASG)", syslogEgressAllowedTCP, Packet{
			Direction: Egress, Allowed: true, SrcIP: "10.255.18.2", DstIP: "140.82.112.3",
			SrcPort: 53100, DstPort: 443, Protocol: "TCP",
		}},
		{"syslog egress denied UDP", syslogEgressDeniedUDP, Packet{
			Direction: Egress, SrcIP: "10.255.18.2", DstIP: "10.0.0.53",
			SrcPort: 40000, DstPort: 53, Protocol: "UDP",
		}},
		{"syslog egress denied ICMP: TYPE and CODE, the first ID= wins", syslogEgressDeniedICMP, Packet{
			Direction: Egress, SrcIP: "10.255.18.2", DstIP: "10.0.0.1",
			Protocol: "ICMP", ICMPType: 8,
		}},
		{"outbound rate limit (DENY_ORL_)", syslogRateLimited, Packet{
			Direction: Egress, SrcIP: "10.255.18.2", DstIP: "192.0.2.10",
			SrcPort: 50000, DstPort: 5432, Protocol: "TCP",
		}},
		{"rsyslog RFC 3339 timestamp", rsyslogRFC3339, Packet{
			Direction: Ingress, Allowed: true, SrcIP: "10.255.20.4", DstIP: "10.255.18.3",
			SrcPort: 5000, DstPort: 5001, Protocol: "UDP", Mark: "0x3",
		}},
		{"kmsg ingress allowed", kmsgIngressAllowedTCP, Packet{
			Direction: Ingress, Allowed: true, SrcIP: "10.255.77.1", DstIP: "10.255.77.2",
			SrcPort: 51602, DstPort: 8080, Protocol: "TCP", Mark: "0x5",
		}},
		{"kmsg egress denied", kmsgEgressDeniedTCP, Packet{
			Direction: Egress, SrcIP: "10.255.77.2", DstIP: "10.255.77.1",
			SrcPort: 40001, DstPort: 9999, Protocol: "TCP",
		}},
		{"IPv6 addresses are kept as the kernel writes them", kmsgIPv6, Packet{
			Direction: Egress, Allowed: true, SrcIP: "fd00:0000:0000:0000:0000:0000:0000:0002",
			DstIP: "2001:0db8:0000:0000:0000:0000:0000:0001", SrcPort: 1, DstPort: 2, Protocol: "TCP",
		}},
		{"OK_ and DENY_ both present: allowed", "DENY_x OK_y SRC=1.1.1.1 DST=2.2.2.2", Packet{
			Direction: Egress, Allowed: true, SrcIP: "1.1.1.1", DstIP: "2.2.2.2",
		}},
		{"first occurrence of every key wins", "OK_x SRC=1.1.1.1 DST=2.2.2.2 SRC=3.3.3.3 SPT=1 SPT=2 OUT=eth0 OUT=s-1", Packet{
			Direction: Egress, Allowed: true, SrcIP: "1.1.1.1", DstIP: "2.2.2.2", SrcPort: 1,
		}},
		{"non-numeric and out of range numbers are 0", "OK_x SRC=1.1.1.1 DST=2.2.2.2 SPT=80a DPT=99999999999999999999 TYPE=-3 CODE=+4", Packet{
			Direction: Egress, Allowed: true, SrcIP: "1.1.1.1", DstIP: "2.2.2.2", ICMPType: -3, ICMPCode: 4,
		}},
		{"OUT= contains s- anywhere", "DENY_x OUT=eths-1 SRC=1.1.1.1 DST=2.2.2.2", Packet{
			Direction: Ingress, SrcIP: "1.1.1.1", DstIP: "2.2.2.2",
		}},
		{"silk-vtep is not a container veth", "OK_x IN=s-010255017002 OUT=silk-vtep SRC=10.255.17.2 DST=10.255.18.2 PROTO=TCP SPT=1 DPT=8080 MARK=0x1", Packet{
			Direction: Egress, Allowed: true, SrcIP: "10.255.17.2", DstIP: "10.255.18.2", SrcPort: 1, DstPort: 8080, Protocol: "TCP", Mark: "0x1",
		}},
		{"tabs and Unicode spaces separate words, as strings.Fields", "OK_x\tSRC=1.1.1.1\u00a0DST=2.2.2.2\u2003PROTO=TCP", Packet{
			Direction: Egress, Allowed: true, SrcIP: "1.1.1.1", DstIP: "2.2.2.2", Protocol: "TCP",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.line)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if !Relevant([]byte(tc.line)) {
				t.Error("Relevant = false")
			}
			if diff := cmp.Diff(referenceParse(tc.line), got); diff != "" {
				t.Errorf("differs from the reference parser (-ref +got):\n%s", diff)
			}
		})
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		line string
		want error
	}{
		{"other kernel message", "Nov 23 10:00:00 cell-7 kernel: [1.0] eth0: link up", ErrIrrelevant},
		{"empty", "", ErrIrrelevant},
		{"lowercase ok_", "ok_x SRC=1.1.1.1 DST=2.2.2.2", ErrIrrelevant},
		{"OK_ but no addresses", "Nov 23 10:00:00 cell-7 kernel: usb 1-1: OK_STATUS", ErrNoAddresses},
		{"no DST", "OK_x SRC=1.1.1.1", ErrNoAddresses},
		{"bad SRC", "DENY_x SRC=1.1.1 DST=2.2.2.2", ErrNoAddresses},
		{"empty DST", "DENY_x SRC=1.1.1.1 DST=", ErrNoAddresses},
		{"first DST wins even when bad", "DENY_x SRC=1.1.1.1 DST=x DST=2.2.2.2", ErrNoAddresses},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Parse(tc.line); !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if relevant := Relevant([]byte(tc.line)); relevant != (tc.want != ErrIrrelevant) {
				t.Errorf("Relevant = %v", relevant)
			}
		})
	}
}

func TestParseAllocatesNothing(t *testing.T) {
	for _, line := range []string{syslogIngressAllowedTCP, kmsgEgressDeniedTCP, syslogEgressDeniedICMP} {
		if n := testing.AllocsPerRun(100, func() { _, _ = Parse(line) }); n != 0 {
			t.Errorf("%d allocations parsing %q", int(n), line)
		}
	}
}

func TestNumberIsAtoi(t *testing.T) {
	for _, s := range []string{
		"", "0", "8080", "+1", "-1", "+", "-", "1a", " 1", "1 ", "0x10", "1_000", "٣",
		strconv.Itoa(math.MaxInt), strconv.Itoa(math.MinInt), "9223372036854775808", "-9223372036854775809",
		"99999999999999999999", "00000000000000000000000000042",
	} {
		want, err := strconv.Atoi(s)
		if err != nil {
			want = 0
		}
		if got := number(s); got != want {
			t.Errorf("number(%q) = %d, want %d", s, got, want)
		}
	}
}
