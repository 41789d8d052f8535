// Package lease is silk's address model: a lease ties a cell's underlay IP
// to one subnet of the overlay network, and the pool says which subnets a
// controller may hand out.
package lease

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
)

// Lease is the wire form shared by silk-controller and silk-daemon.
type Lease struct {
	UnderlayIP          string `json:"underlay_ip" db:"underlay_ip"`
	OverlaySubnet       string `json:"overlay_subnet" db:"overlay_subnet"`
	OverlayHardwareAddr string `json:"overlay_hardware_addr" db:"overlay_hwaddr"`
}

// Validate checks the three fields parse, as a renewal requires.
func (l Lease) Validate() error {
	if net.ParseIP(l.UnderlayIP) == nil {
		return fmt.Errorf("invalid underlay ip: %q", l.UnderlayIP)
	}
	if _, _, err := net.ParseCIDR(l.OverlaySubnet); err != nil {
		return fmt.Errorf("invalid overlay subnet: %q", l.OverlaySubnet)
	}
	if _, err := net.ParseMAC(l.OverlayHardwareAddr); err != nil {
		return fmt.Errorf("invalid overlay hardware address: %q", l.OverlayHardwareAddr)
	}
	return nil
}

// HardwareAddr derives a lease's VTEP MAC: ee:ee followed by the four bytes
// of the subnet's first address (10.255.17.0/24 → ee:ee:0a:ff:11:00).
func HardwareAddr(subnet string) (string, error) {
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil || !prefix.Addr().Is4() {
		return "", fmt.Errorf("invalid overlay subnet: %q", subnet)
	}
	ip := prefix.Addr().As4()
	return net.HardwareAddr{0xee, 0xee, ip[0], ip[1], ip[2], ip[3]}.String(), nil
}

// Pool is the set of subnets a controller leases out for one overlay
// network and subnet size. The network's first subnet is kept back for
// single-IP (/32) leases; every other subnet is a block lease.
type Pool struct {
	network   netip.Prefix
	prefixLen int
	base      uint32
	blockSize uint32
	blocks    uint32 // number of block leases (excludes the first subnet)
}

// NewPool validates network and subnetPrefixLength (1..30, longer than the
// network's prefix) and returns the pool.
func NewPool(network string, subnetPrefixLength int) (*Pool, error) {
	prefix, err := netip.ParsePrefix(network)
	if err != nil || !prefix.Addr().Is4() {
		return nil, fmt.Errorf("invalid network %q: must be an IPv4 CIDR", network)
	}
	if prefix.Masked() != prefix {
		return nil, fmt.Errorf("invalid network %q: host bits set (did you mean %s?)", network, prefix.Masked())
	}
	if subnetPrefixLength < 1 || subnetPrefixLength > 30 {
		return nil, fmt.Errorf("invalid subnet_prefix_length %d: must be between 1 and 30", subnetPrefixLength)
	}
	if subnetPrefixLength <= prefix.Bits() {
		return nil, fmt.Errorf("invalid subnet_prefix_length %d: must be longer than the network prefix /%d", subnetPrefixLength, prefix.Bits())
	}
	a := prefix.Addr().As4()
	return &Pool{
		network:   prefix,
		prefixLen: subnetPrefixLength,
		base:      binary.BigEndian.Uint32(a[:]),
		blockSize: 1 << (32 - subnetPrefixLength),
		blocks:    1<<(subnetPrefixLength-prefix.Bits()) - 1,
	}, nil
}

// Network is the overlay network.
func (p *Pool) Network() netip.Prefix { return p.network }

// BlockCount is how many block leases the pool holds (255 for a /16 of /24s).
func (p *Pool) BlockCount() int { return int(p.blocks) }

// SingleCount is how many single-IP leases the pool holds.
func (p *Pool) SingleCount() int { return int(p.blockSize) - 1 }

// Block returns the i-th block lease subnet, 0 ≤ i < BlockCount.
func (p *Pool) Block(i int) string {
	return fmt.Sprintf("%s/%d", u32addr(p.base+uint32(i+1)*p.blockSize), p.prefixLen)
}

// Single returns the i-th single-IP lease, 0 ≤ i < SingleCount.
func (p *Pool) Single(i int) string {
	return u32addr(p.base+uint32(i)+1).String() + "/32"
}

// IsMember reports whether subnet is, exactly as written, a lease of this
// pool. A lease written for another network or subnet size is not, which is
// how a controller notices that its configuration changed.
func (p *Pool) IsMember(subnet string) bool {
	prefix, err := netip.ParsePrefix(subnet)
	if err != nil || !prefix.Addr().Is4() || prefix.String() != subnet || !p.network.Contains(prefix.Addr()) {
		return false
	}
	a := prefix.Addr().As4()
	offset := binary.BigEndian.Uint32(a[:]) - p.base
	switch prefix.Bits() {
	case 32:
		return offset >= 1 && offset < p.blockSize
	case p.prefixLen:
		return offset >= p.blockSize && offset%p.blockSize == 0
	default:
		return false
	}
}

// IsSingle reports whether subnet is a single-IP lease.
func IsSingle(subnet string) bool {
	prefix, err := netip.ParsePrefix(subnet)
	return err == nil && prefix.Bits() == 32
}

// RandomFree picks a uniformly random subnet of the requested kind that is
// not in taken; ok is false when every one is taken. Random choice keeps two
// controllers racing on one database from colliding on the same subnet.
func (p *Pool) RandomFree(single bool, taken map[string]bool, rnd *rand.Rand) (subnet string, ok bool) {
	count, at := p.BlockCount(), p.Block
	if single {
		count, at = p.SingleCount(), p.Single
	}
	used := make([]bool, count)
	for s := range taken {
		if i, ok := p.index(s, single); ok {
			used[i] = true
		}
	}
	free := make([]int32, 0, count)
	for i, u := range used {
		if !u {
			free = append(free, int32(i))
		}
	}
	if len(free) == 0 {
		return "", false
	}
	return at(int(free[rnd.IntN(len(free))])), true
}

// index is the inverse of Block and Single for members of the pool.
func (p *Pool) index(subnet string, single bool) (int, bool) {
	if !p.IsMember(subnet) || IsSingle(subnet) != single {
		return 0, false
	}
	a := netip.MustParsePrefix(subnet).Addr().As4()
	offset := binary.BigEndian.Uint32(a[:]) - p.base
	if single {
		return int(offset) - 1, true
	}
	return int(offset/p.blockSize) - 1, true
}

func u32addr(v uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}
