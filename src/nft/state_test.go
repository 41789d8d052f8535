package nft

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Listings as nft 1.0.6 prints them (`nft -j -n list table`, `nft -t list
// table`), so the parsers are checked without root; TestRoundTrip checks
// them against the live nft.
const jsonListing = `{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
{"table": {"family": "inet", "name": "netman", "handle": 1}},
{"chain": {"family": "inet", "table": "netman", "name": "forward", "handle": 2, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
{"chain": {"family": "inet", "table": "netman", "name": "c2c", "handle": 3}},
{"chain": {"family": "inet", "table": "other", "name": "x", "handle": 3}},
{"set": {"family": "inet", "name": "pol", "table": "netman", "type": ["mark", "ipv4_addr", "inet_proto", "inet_service"], "handle": 4, "flags": ["interval"],
  "elem": [{"concat": [3, "10.255.1.2", 17, 9000]}, {"concat": [3, {"prefix": {"addr": "10.255.1.0", "len": 24}}, 6, {"range": [8080, 8099]}]},
           {"concat": [3, {"range": ["10.255.2.1", "10.255.2.9"]}, 6, 1]}]}},
{"set": {"family": "inet", "name": "ic", "table": "netman", "type": ["ipv4_addr", "icmp_type", "icmp_code"], "handle": 5, "flags": ["interval"],
  "elem": [{"concat": [{"prefix": {"addr": "0.0.0.0", "len": 0}}, {"range": [0, 255]}, {"range": [0, 255]}]}, {"concat": [{"prefix": {"addr": "10.0.0.1", "len": 32}}, 3, 255]}]}},
{"set": {"family": "inet", "name": "rl", "table": "netman", "type": ["ipv4_addr", "inet_service"], "handle": 6, "size": 65535, "flags": ["timeout"], "timeout": 10,
  "elem": [{"elem": {"val": {"concat": ["1.2.3.4", 443]}, "timeout": 10, "expires": 9}}]}},
{"map": {"family": "inet", "name": "nd", "table": "netman", "type": ["ipv4_addr", "ifname"], "handle": 7, "map": "verdict",
  "elem": [[{"concat": ["10.255.1.2", "eth0"]}, {"jump": {"target": "netout--h"}}], [{"concat": ["10.255.1.3", "eth0"]}, {"accept": null}]]}},
{"map": {"family": "inet", "name": "pm", "table": "netman", "type": ["ipv4_addr", "inet_service"], "handle": 8, "map": "ipv4_addr . inet_service",
  "elem": [[{"concat": ["10.0.0.5", 61000]}, {"concat": ["10.255.1.2", 8080]}]]}},
{"map": {"family": "inet", "name": "tags", "table": "netman", "type": "ipv4_addr", "handle": 9, "map": "mark", "elem": [["10.255.1.2", 3]]}}
]}`

const textListing = `table inet netman {
	set pol {
		type mark . ipv4_addr . inet_proto . inet_service
		flags interval
	}

	chain forward {
		type filter hook forward priority filter; policy accept;
		jump c2c
		ip daddr vmap @overlay-dispatch
	}

	chain c2c {
		meta mark set ip saddr map @c2c-tags
	}

	chain empty {
	}
}
`

func TestParseListings(t *testing.T) {
	st := NewState()
	if err := parseRulesText(st, textListing); err != nil {
		t.Fatal(err)
	}
	if err := parseJSON(st, []byte(jsonListing)); err != nil {
		t.Fatal(err)
	}
	want := &State{
		Chains: map[string]*ChainState{
			"forward": {Name: "forward", Base: true, Rules: []string{"jump c2c", "ip daddr vmap @overlay-dispatch"}},
			"c2c":     {Name: "c2c", Rules: []string{"meta mark set ip saddr map @c2c-tags"}},
			"empty":   {Name: "empty"},
		},
		Sets: map[string]*SetState{
			"pol": {Name: "pol", Type: "mark . ipv4_addr . inet_proto . inet_service", Interval: true, Elements: map[string]string{
				"0x00000003 . 10.255.1.2 . udp . 9000":         "",
				"0x00000003 . 10.255.1.0/24 . tcp . 8080-8099": "",
				"0x00000003 . 10.255.2.1-10.255.2.9 . tcp . 1": "",
			}},
			"ic": {Name: "ic", Type: "ipv4_addr . icmp_type . icmp_code", Interval: true, Elements: map[string]string{
				"0.0.0.0/0 . 0-255 . 0-255": "",
				"10.0.0.1 . 3 . 255":        "",
			}},
			"rl": {Name: "rl", Type: "ipv4_addr . inet_service", Dynamic: true, Timeout: 10 * time.Second, Size: 65535, Elements: map[string]string{}},
			"nd": {Name: "nd", Type: "ipv4_addr . ifname", Value: "verdict", Elements: map[string]string{
				`10.255.1.2 . "eth0"`: "jump netout--h",
				`10.255.1.3 . "eth0"`: "accept",
			}},
			"pm":   {Name: "pm", Type: "ipv4_addr . inet_service", Value: "ipv4_addr . inet_service", Elements: map[string]string{"10.0.0.5 . 61000": "10.255.1.2 . 8080"}},
			"tags": {Name: "tags", Type: "ipv4_addr", Value: "mark", Elements: map[string]string{"10.255.1.2": "0x00000003"}},
		},
	}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestCanonicalForms(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{addrRange(0x0a000000, 0x0a0000ff), "10.0.0.0/24"},
		{addrRange(0x0a000001, 0x0a000001), "10.0.0.1"},
		{addrRange(0x0a000001, 0x0a000002), "10.0.0.1-10.0.0.2"},
		{addrRange(0, 0xffffffff), "0.0.0.0/0"},
		{addrRange(0x0a000000, 0x0a000001), "10.0.0.0/31"},
		{addrRange(0x0a000002, 0x0a000005), "10.0.0.2-10.0.0.5"},
		{Range(80, 80), "80"},
		{Range(1, 65535), "1-65535"},
		{Mark(0xffff0000), "0xffff0000"},
		{LimitedLog(5, "DENY_C2C_h"), `limit rate 5/second log prefix "DENY_C2C_h "`},
		{LimitedLog(100, "OK_aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"), `limit rate 100/second burst 100 packets log prefix "OK_aaaaaaaa-bbbb-cccc-dddd-e "`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}
