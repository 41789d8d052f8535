package cni

import (
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNamesFor(t *testing.T) {
	tests := []struct {
		ip   string
		want Names
	}{
		{"10.255.30.5", Names{
			ContainerIP:  net.IP{10, 255, 30, 5},
			HostDevice:   "s-010255030005",
			TempDevice:   "c-010255030005",
			HostMAC:      net.HardwareAddr{0xaa, 0xaa, 10, 255, 30, 5},
			ContainerMAC: net.HardwareAddr{0xee, 0xee, 10, 255, 30, 5},
		}},
		{"1.2.3.4", Names{
			ContainerIP:  net.IP{1, 2, 3, 4},
			HostDevice:   "s-001002003004",
			TempDevice:   "c-001002003004",
			HostMAC:      net.HardwareAddr{0xaa, 0xaa, 1, 2, 3, 4},
			ContainerMAC: net.HardwareAddr{0xee, 0xee, 1, 2, 3, 4},
		}},
	}
	for _, tt := range tests {
		got, err := NamesFor(net.ParseIP(tt.ip)) // 16-byte form on purpose
		if err != nil {
			t.Fatalf("NamesFor(%s): %v", tt.ip, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("NamesFor(%s) (-want +got):\n%s", tt.ip, diff)
		}
		if len(got.HostDevice) > 15 {
			t.Errorf("%s longer than IFNAMSIZ-1", got.HostDevice)
		}
	}
	if got := HostDeviceName(net.ParseIP("10.255.17.2")); got != "s-010255017002" {
		t.Errorf("HostDeviceName = %q", got)
	}
	n, _ := NamesFor(net.ParseIP("10.255.30.5"))
	if n.HostMAC.String() != "aa:aa:0a:ff:1e:05" || n.ContainerMAC.String() != "ee:ee:0a:ff:1e:05" {
		t.Errorf("MACs %s %s", n.HostMAC, n.ContainerMAC)
	}
}
