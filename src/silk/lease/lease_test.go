package lease

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewPoolValidation(t *testing.T) {
	tests := []struct {
		network string
		prefix  int
		want    string
	}{
		{"10.255.0.0/16", 24, ""},
		{"10.224.0.0/11", 22, ""},
		{"banana", 24, "must be an IPv4 CIDR"},
		{"fd00::/64", 96, "must be an IPv4 CIDR"},
		{"10.255.1.0/16", 24, "host bits set"},
		{"10.255.0.0/16", 0, "between 1 and 30"},
		{"10.255.0.0/16", 31, "between 1 and 30"},
		{"10.255.0.0/16", 16, "longer than the network prefix"},
		{"10.255.0.0/24", 20, "longer than the network prefix"},
	}
	for _, tt := range tests {
		_, err := NewPool(tt.network, tt.prefix)
		if tt.want == "" && err != nil {
			t.Errorf("NewPool(%q, %d) = %v", tt.network, tt.prefix, err)
		}
		if tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("NewPool(%q, %d) error = %v, want %q", tt.network, tt.prefix, err, tt.want)
		}
	}
}

func TestPoolShape(t *testing.T) {
	p, err := NewPool("10.255.0.0/16", 24)
	if err != nil {
		t.Fatal(err)
	}
	if p.BlockCount() != 255 || p.SingleCount() != 255 {
		t.Fatalf("counts = %d blocks, %d singles", p.BlockCount(), p.SingleCount())
	}
	got := []string{p.Block(0), p.Block(254), p.Single(0), p.Single(254)}
	want := []string{"10.255.1.0/24", "10.255.255.0/24", "10.255.0.1/32", "10.255.0.255/32"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	big, _ := NewPool("10.224.0.0/11", 22)
	if big.BlockCount() != 2047 || big.Block(2046) != "10.255.252.0/22" {
		t.Fatalf("/11 of /22: %d blocks, last %s", big.BlockCount(), big.Block(2046))
	}
}

func TestIsMember(t *testing.T) {
	p, _ := NewPool("10.255.0.0/16", 24)
	members := map[string]bool{
		"10.255.1.0/24":   true,
		"10.255.255.0/24": true,
		"10.255.0.17/32":  true,
		"10.255.0.255/32": true,
		"10.255.0.0/24":   false, // the first subnet is for single IPs
		"10.255.0.0/32":   false, // the network address is never leased
		"10.255.30.10/24": false, // exact string match only
		"10.255.1.5/32":   false, // singles only come from the first subnet
		"10.255.2.0/23":   false,
		"10.254.1.0/24":   false,
		"garbage":         false,
	}
	for subnet, want := range members {
		if got := p.IsMember(subnet); got != want {
			t.Errorf("IsMember(%q) = %v, want %v", subnet, got, want)
		}
	}
}

func TestHardwareAddr(t *testing.T) {
	for subnet, want := range map[string]string{
		"10.255.17.0/24": "ee:ee:0a:ff:11:00",
		"10.255.0.17/32": "ee:ee:0a:ff:00:11",
	} {
		got, err := HardwareAddr(subnet)
		if err != nil || got != want {
			t.Errorf("HardwareAddr(%q) = %q, %v; want %q", subnet, got, err, want)
		}
	}
	if _, err := HardwareAddr("nope"); err == nil {
		t.Error("HardwareAddr accepted garbage")
	}
}

func TestRandomFreeCoversPoolThenStops(t *testing.T) {
	p, _ := NewPool("10.255.0.0/16", 24)
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, single := range []bool{false, true} {
		taken := map[string]bool{}
		for i := 0; i < 255; i++ {
			s, ok := p.RandomFree(single, taken, rnd)
			if !ok || taken[s] || !p.IsMember(s) || IsSingle(s) != single {
				t.Fatalf("pick %d: %q ok=%v", i, s, ok)
			}
			taken[s] = true
		}
		if s, ok := p.RandomFree(single, taken, rnd); ok {
			t.Fatalf("full pool handed out %q", s)
		}
	}
}

func TestValidate(t *testing.T) {
	good := Lease{UnderlayIP: "10.0.0.1", OverlaySubnet: "10.255.1.0/24", OverlayHardwareAddr: "ee:ee:0a:ff:01:00"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Lease{
		{UnderlayIP: "x", OverlaySubnet: good.OverlaySubnet, OverlayHardwareAddr: good.OverlayHardwareAddr},
		{UnderlayIP: good.UnderlayIP, OverlaySubnet: "10.255.1.0", OverlayHardwareAddr: good.OverlayHardwareAddr},
		{UnderlayIP: good.UnderlayIP, OverlaySubnet: good.OverlaySubnet, OverlayHardwareAddr: "zz"},
	} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted", bad)
		}
	}
}

func TestRandomFreeSkipsForeignTakenEntries(t *testing.T) {
	p, _ := NewPool("10.255.0.0/29", 30) // one block, three singles
	rnd := rand.New(rand.NewPCG(3, 4))
	taken := map[string]bool{"10.1.0.0/30": true, "10.255.0.1/32": true, "garbage": true}
	if s, ok := p.RandomFree(false, taken, rnd); !ok || s != "10.255.0.4/30" {
		t.Fatalf("block pick = %q %v", s, ok)
	}
	for i := 0; i < 20; i++ {
		if s, ok := p.RandomFree(true, taken, rnd); !ok || s == "10.255.0.1/32" {
			t.Fatalf("single pick = %q %v", s, ok)
		}
	}
}
