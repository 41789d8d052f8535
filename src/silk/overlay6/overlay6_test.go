package overlay6

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"", DefaultNetwork, ""},
		{"fd00:1::/96", "fd00:1::/96", ""},
		{"fd00:1::/64", "", "must be a /96"},
		{"fd00:1::1/96", "", "host bits set (did you mean fd00:1::/96?)"},
		{"10.255.0.0/16", "", "want an IPv6 CIDR"},
		{"::ffff:0:0/96", "", "want an IPv6 CIDR"},
		{"banana", "", "want an IPv6 CIDR"},
	} {
		n, err := Parse(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) error %v, want it to contain %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || n.String() != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %s", tc.in, n, err, tc.want)
		}
	}
}

func TestMapping(t *testing.T) {
	n := MustParse(DefaultNetwork)
	a := n.Addr(netip.MustParseAddr("10.255.7.12"))
	if a.String() != "fd73:696c:6b::aff:70c" {
		t.Fatalf("Addr = %s", a)
	}
	if v4, ok := n.IPv4(a); !ok || v4.String() != "10.255.7.12" {
		t.Fatalf("IPv4(%s) = %s, %v", a, v4, ok)
	}
	if _, ok := n.IPv4(netip.MustParseAddr("fd00::1")); ok {
		t.Fatal("IPv4 of an address outside the network answered ok")
	}
	if p := n.Prefix6(netip.MustParsePrefix("10.255.7.0/24")); p.String() != "fd73:696c:6b::aff:700/120" {
		t.Fatalf("Prefix6 = %s", p)
	}
	if p := n.Prefix6(netip.MustParsePrefix("10.255.0.9/32")); p.String() != "fd73:696c:6b::aff:9/128" {
		t.Fatalf("Prefix6 single = %s", p)
	}
	if Uint32(a) != 0x0aff070c {
		t.Fatalf("Uint32 = %x", Uint32(a))
	}
	var zero Network
	if zero.Enabled() || zero.Contains(a) || zero.String() != "" {
		t.Fatal("zero network is not disabled")
	}
}
