package rules

import (
	"net/netip"
	"regexp"
	"testing"
)

func TestASGChainNames(t *testing.T) {
	pattern := regexp.MustCompile(ASGChainPattern)
	for _, tc := range []struct{ handle, chain string }{
		{"bfce786c-ab07-40ad-79f9-8f21", "asg-bfce786cab0740ad79f9"},
		{"check-bfce786c-ab07-40ad-79f9-8f21", "asg-bfce786cab0740ad79f9"},
		{"bfce786c-ab07-40ad-79f9-8f21-0123456789ab", "asg-bfce786cab0740ad79f9"},
		{"abc", "asg-abc"},
		{"a-b-c", "asg-abc"},
		{"check-x", "asg-x"},
		{"x-check-y", "asg-xchecky"},
	} {
		if got := ASGChain(tc.handle); got != tc.chain {
			t.Errorf("ASGChain(%q) = %q, want %q", tc.handle, got, tc.chain)
		}
		if got := ASGCandidateChain(tc.handle); got != "c"+tc.chain {
			t.Errorf("ASGCandidateChain(%q) = %q", tc.handle, got)
		}
		if !pattern.MatchString(ASGChain(tc.handle)) || !pattern.MatchString(ASGCandidateChain(tc.handle)) {
			t.Errorf("%q: names do not match %s", tc.handle, ASGChainPattern)
		}
		if len(ASGCandidateChain(tc.handle)) > MaxChainLen {
			t.Errorf("%q: candidate name too long", tc.handle)
		}
	}
	for _, n := range []string{"netout--asg-x", "asg-", "xasg-abc", "cc-asg-x"} {
		if pattern.MatchString(n) {
			t.Errorf("%q matches %s", n, ASGChainPattern)
		}
	}
}

func TestOverlayAcceptAll(t *testing.T) {
	got := OverlayAcceptAll(netip.MustParsePrefix("10.255.7.1/16"))
	if want := "-s 10.255.0.0/16 -d 10.255.0.0/16 -j ACCEPT"; string(got) != want {
		t.Errorf("got %q want %q", got, want)
	}
}
