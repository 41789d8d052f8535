package nft

import (
	"reflect"
	"testing"
)

func TestBatchElements(t *testing.T) {
	in := "add table inet netman\n" +
		"add element inet netman s { 1 }\nadd element inet netman s { 2 }\n" +
		"delete element inet netman s { 3 }\nadd element inet netman m { 4 : jump c }\nadd element inet netman m { 5 : drop }\n" +
		"flush chain inet netman c\nadd element inet netman s { 6 }\n"
	want := "add table inet netman\n" +
		"add element inet netman s { 1, 2 }\n" +
		"delete element inet netman s { 3 }\nadd element inet netman m { 4 : jump c, 5 : drop }\n" +
		"flush chain inet netman c\nadd element inet netman s { 6 }\n"
	if got := batchElements(in); got != want {
		t.Errorf("batchElements:\n%s\nwant:\n%s", got, want)
	}
}

func TestSegments(t *testing.T) {
	in := "delete element inet netman s { 1 }\n" +
		"add table inet netman\nadd set inet netman s { type ipv4_addr ; }\n" +
		"add element inet netman s { 2 }\nadd element inet netman m { 4 : jump c }\n" +
		"add element inet netman s { 5 comment \"x\" }\nflush chain inet netman c\n"
	segs, n := segments(in)
	want := []segment{
		{ops: []elementOp{{del: true, set: "s", key: "1"}}, text: "delete element inet netman s { 1 }\n"},
		{text: "add table inet netman\nadd set inet netman s { type ipv4_addr ; }\n"},
		{ops: []elementOp{{set: "s", key: "2"}, {set: "m", key: "4", value: "jump c"}},
			text: "add element inet netman s { 2 }\nadd element inet netman m { 4 : jump c }\n"},
		{text: "add element inet netman s { 5 comment \"x\" }\nflush chain inet netman c\n"},
	}
	if n != 3 || !reflect.DeepEqual(segs, want) {
		t.Errorf("segments: %d elements, %+v\nwant 3, %+v", n, segs, want)
	}
}

// TestDecodeElement checks decodeElement against encodeElement for every
// shape readElements decodes; the privileged tests compare Read with what
// nft itself wrote.
func TestDecodeElement(t *testing.T) {
	policy := "mark . ipv4_addr . inet_proto . inet_service"
	for _, tt := range []struct {
		typ, value string
		interval   bool
		key, val   string
	}{
		{policy, "", false, "0x00010203 . 10.255.1.7 . tcp . 443", ""},
		{policy, "", true, "0x00000007 . 10.255.1.7 . udp . 1000-2000", ""},
		{policy, "", true, "0x00000007 . 10.255.1.7 . 132 . 80", ""},
		{"ipv4_addr . inet_proto . inet_service", "", true, "10.0.0.0/8 . tcp . 1-65535", ""},
		{"ipv4_addr . inet_proto . inet_service", "", true, "10.0.0.1-10.0.0.5 . udp . 53", ""},
		{"ipv4_addr", "mark", false, "10.255.1.7", "0x0000fffe"},
		{"ipv4_addr . ifname", "", false, "10.255.1.7 . \"s-010255001007\"", ""},
		{"ipv4_addr . inet_service", "ipv4_addr . inet_service", false, "10.0.0.1 . 8080", "10.255.1.7 . 80"},
		{"ipv6_addr . inet_proto . inet_service", "", true, "2001:db8::/32 . tcp . 1-65535", ""},
		{"ipv6_addr . inet_proto . inet_service", "", true, "2001:db8::1-2001:db8::9 . udp . 53", ""},
		{"ipv6_addr . ifname", "", false, "fd73:696c:6b::aff:1105 . \"eth0\"", ""},
		{"ipv6_addr . ifname . inet_service", "mark", false, "2001:db8:16::5 . \"eth0\" . 61001", "0xffff0000"},
		{"ipv6_addr . inet_service", "ipv6_addr . inet_service", false, "2001:db8:16::5 . 61001", "fd73:696c:6b::aff:1105 . 8080"},
		{"mark . ipv6_addr . inet_proto . inet_service", "", false, "0x00010203 . fd73:696c:6b::aff:107 . tcp . 443", ""},
		{"mark . ipv6_addr . inet_proto . inet_service", "", true, "0x00000007 . fd73:696c:6b::aff:107 . udp . 1000-2000", ""},
		{"ipv6_addr . inet_proto . inet_service", "", true, "2001:db8::/32 . tcp . 1-65535", ""},
		{"ipv6_addr . inet_proto . inet_service", "", true, "2001:db8::1-2001:db8::5 . udp . 53", ""},
		{"ipv6_addr", "mark", false, "fd73:696c:6b::aff:107", "0x0000fffe"},
	} {
		var ts setTypes
		var c typeCache
		c.put("s", tt.typ, tt.value, tt.interval)
		ts, _ = c.get("s")
		el, err := encodeElement(ts, elementOp{set: "s", key: tt.key, value: tt.val}, true)
		if err != nil {
			t.Fatalf("%s: encoding: %v", tt.key, err)
		}
		key, val, err := decodeElement(ts, el)
		if err != nil || key != tt.key || val != tt.val {
			t.Errorf("decodeElement(%s : %s) = %q : %q, %v", tt.key, tt.val, key, val, err)
		}
	}
	if decodable(setTypes{key: []string{"ipv4_addr"}, interval: true}) || decodable(setTypes{key: []string{"ipv4_addr"}, value: []string{"verdict"}}) {
		t.Error("non-concatenated interval sets and verdict maps are not decodable")
	}
}
