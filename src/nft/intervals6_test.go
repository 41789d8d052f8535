package nft

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDisjoint6(t *testing.T) {
	a := netip.MustParseAddr
	all := Box6{Lo: a("::"), Hi: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")}
	for _, tc := range []struct {
		name string
		in   []Box6
		want []Box6
	}{
		{"empty", nil, nil},
		{"merge touching address-only", []Box6{
			{Lo: a("2001:db8::10"), Hi: a("2001:db8::1f")},
			{Lo: a("2001:db8::"), Hi: a("2001:db8::f")},
		}, []Box6{{Lo: a("2001:db8::"), Hi: a("2001:db8::1f")}}},
		{"everything absorbs", []Box6{all, {Lo: a("2001:db8::"), Hi: a("2001:db8::f")}}, []Box6{all}},
		{"overlap splits by other fields", []Box6{
			{Lo: a("2001:db8::"), Hi: a("2001:db8::ff"), Rest: Box{{6, 6}, {443, 443}}},
			{Lo: a("2001:db8::80"), Hi: a("2001:db8::1ff"), Rest: Box{{6, 6}, {80, 80}}},
		}, []Box6{
			{Lo: a("2001:db8::"), Hi: a("2001:db8::7f"), Rest: Box{{6, 6}, {443, 443}}},
			{Lo: a("2001:db8::80"), Hi: a("2001:db8::ff"), Rest: Box{{6, 6}, {80, 80}}},
			{Lo: a("2001:db8::80"), Hi: a("2001:db8::ff"), Rest: Box{{6, 6}, {443, 443}}},
			{Lo: a("2001:db8::100"), Hi: a("2001:db8::1ff"), Rest: Box{{6, 6}, {80, 80}}},
		}},
		{"last address", []Box6{
			{Lo: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0"), Hi: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Rest: Box{{0, 255}}},
			{Lo: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"), Hi: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffef"), Rest: Box{{0, 255}}},
		}, []Box6{{Lo: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00"), Hi: a("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Rest: Box{{0, 255}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Disjoint6(tc.in)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestAddrRange6(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		lo, hi, want string
	}{
		{"2001:db8::1", "2001:db8::1", "2001:db8::1"},
		{"::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "::/0"},
		{"fd00::", "fd00::ff", "fd00::/120"},
		{"2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32"},
		{"2001:db8::1", "2001:db8::9", "2001:db8::1-2001:db8::9"},
		{"fd00::", "fd00::fe", "fd00::-fd00::fe"},
	} {
		if got := AddrRange(a(tc.lo), a(tc.hi)); got != tc.want {
			t.Errorf("%s-%s: got %s want %s", tc.lo, tc.hi, got, tc.want)
		}
	}
}
