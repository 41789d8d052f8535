package nft

import "testing"

// TestEncodeRuleRefuses lists rule texts the fast path must leave to nft:
// anything it would otherwise encode only in part or not as nft does.
func TestEncodeRuleRefuses(t *testing.T) {
	for _, r := range []string{
		"accept comment \"x\"",
		"ip daddr 10.0.0.1 accept drop",
		"ip saddr . oifname vmap @netout-dispatch",
		"meta l4proto 132 accept",
		"ip daddr 0.0.0.0/0 accept",
		"ip daddr 10.0.0.1/8 accept", // not a network address
		"ip6 daddr ::/0 accept",
		"ip6 daddr 2001:db8::/33 accept", // a prefix nft matches with a bitwise mask
		"ip6 daddr fd00::1/8 accept",     // not a network address
		"ip6 daddr ::ffff:10.0.0.1 accept",
		"icmpv6 type echo-request accept",
		"ip6 daddr fd00::1 reject with icmp port-unreachable",
		"ip6 daddr . tcp dport @s accept",
		"tcp dport 80-90 accept",
		`oifname "eth*" accept`,
		`log prefix "OK_x " level warn`,
		"limit rate 5/minute accept",
		"reject with tcp reset",
		"ct state new update @m { ip daddr . tcp dport limit rate over 1/second } reject",
		"ip daddr . tcp dport @s accept",
		"meta l4proto tcp",
		"",
	} {
		if _, err := encodeRule(r); err == nil {
			t.Errorf("%q: encoded, want it left to nft", r)
		}
	}
}
