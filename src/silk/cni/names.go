package cni

import (
	"fmt"
	"net"
)

// HostIP is the address every host-side veth carries and every container's
// default gateway (upstream's fixed link-local "169.254.0.1").
var HostIP = net.IPv4(169, 254, 0, 1).To4()

// Names is everything silk derives from a container's overlay IP: device
// names and MAC addresses, so that a veth can be found again from the IP
// alone (DEL, GC, the daemon and operators rely on this).
type Names struct {
	ContainerIP  net.IP           // 4-byte form
	HostDevice   string           // s-AAABBBCCCDDD
	TempDevice   string           // c-AAABBBCCCDDD, the container end before the rename
	HostMAC      net.HardwareAddr // aa:aa:<ip bytes>
	ContainerMAC net.HardwareAddr // ee:ee:<ip bytes>
}

// NamesFor derives the names for an IPv4 container address.
func NamesFor(ip net.IP) (Names, error) {
	ip4 := ip.To4()
	if ip4 == nil {
		return Names{}, fmt.Errorf("container address %q is not IPv4", ip)
	}
	suffix := fmt.Sprintf("%03d%03d%03d%03d", ip4[0], ip4[1], ip4[2], ip4[3])
	return Names{
		ContainerIP:  append(net.IP(nil), ip4...),
		HostDevice:   "s-" + suffix,
		TempDevice:   "c-" + suffix,
		HostMAC:      net.HardwareAddr{0xaa, 0xaa, ip4[0], ip4[1], ip4[2], ip4[3]},
		ContainerMAC: net.HardwareAddr{0xee, 0xee, ip4[0], ip4[1], ip4[2], ip4[3]},
	}, nil
}

// HostDeviceName is the host veth name for a container IP ("" if not IPv4).
func HostDeviceName(ip net.IP) string {
	n, err := NamesFor(ip)
	if err != nil {
		return ""
	}
	return n.HostDevice
}
