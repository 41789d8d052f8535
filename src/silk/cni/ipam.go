package cni

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/allocator"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

// ipam is host-local linked in: the same allocator (round robin from
// last_reserved_ip, gateway .1 skipped, broadcast excluded) and the same
// on-disk store (one file per IP holding "<containerID>\r\n<ifname>", a
// flock on <dir>/lock), so the stock host-local binary, upstream's
// silk-cni and cni-teardown all read and write the same state. Running it
// in-process saves a fork/exec and a JSON round trip per ADD and DEL.
type ipam struct {
	root    string // <dataDir>/ipam
	network string // network name: the sub-directory
}

func newIPAM(conf *NetConf) ipam {
	return ipam{root: filepath.Join(conf.DataDir, "ipam"), network: conf.Name}
}

func (i ipam) dir() string { return filepath.Join(i.root, i.network) }

// rangeSet is host-local's canonical single range over the lease subnet.
func rangeSet(subnet string) (allocator.RangeSet, error) {
	ipn, err := types.ParseCIDR(subnet)
	if err != nil {
		return nil, fmt.Errorf("invalid subnet: %w", err)
	}
	return allocator.RangeSet{{Subnet: types.IPNet(*ipn)}}, nil
}

// allocate reserves the next free address of subnet for (id, ifname),
// exactly as `host-local` ADD with `ranges: [[{subnet}]]` would.
func (i ipam) allocate(rs allocator.RangeSet, id, ifname string) (net.IP, error) {
	if err := rs.Canonicalize(); err != nil {
		return nil, fmt.Errorf("invalid range set 0: %w", err)
	}
	store, err := disk.New(i.network, i.root)
	if err != nil {
		return nil, err
	}
	defer store.Close()
	cfg, err := allocator.NewIPAllocator(&rs, store, 0).Get(id, ifname, nil)
	if err != nil {
		return nil, fmt.Errorf("failed to allocate for range 0: %w", err)
	}
	return cfg.Address.IP.To4(), nil
}

// release drops every reservation of (id, ifname), like host-local DEL
// (which ignores the subnet it is given). Nothing reserved is not an error.
func (i ipam) release(id, ifname string) error {
	if _, err := os.Stat(i.dir()); errors.Is(err, os.ErrNotExist) {
		return nil // never allocated here; do not create the directory
	}
	return i.locked(func(store *disk.Store) error { return store.ReleaseByID(id, ifname) })
}

// allocation is one reservation file.
type allocation struct {
	IP          net.IP
	ContainerID string
	IfName      string // "" in files written by old host-local versions
}

// lookup returns the reservations of (id, ifname), without locking: used
// read-only by DEL and CHECK, where a torn read only means "not found".
func (i ipam) lookup(id, ifname string) []net.IP {
	all, _ := i.list()
	var ips []net.IP
	for _, a := range all {
		if a.ContainerID == strings.TrimSpace(id) && (a.IfName == "" || a.IfName == ifname) {
			ips = append(ips, a.IP)
		}
	}
	return ips
}

// list reads every reservation file. Callers that act on the result hold
// the store lock.
func (i ipam) list() ([]allocation, error) {
	entries, err := os.ReadDir(i.dir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []allocation
	for _, e := range entries {
		ip := net.ParseIP(e.Name())
		if e.IsDir() || ip == nil {
			continue // lock, last_reserved_ip.N
		}
		data, err := os.ReadFile(filepath.Join(i.dir(), e.Name()))
		if err != nil {
			continue // released meanwhile
		}
		id, ifname, _ := strings.Cut(strings.TrimSpace(string(data)), disk.LineBreak)
		out = append(out, allocation{IP: ip, ContainerID: strings.TrimSpace(id), IfName: strings.TrimSpace(ifname)})
	}
	return out, nil
}

// locked runs fn holding host-local's store lock, so no ADD can reserve
// (and no DEL release) meanwhile.
func (i ipam) locked(fn func(*disk.Store) error) error {
	store, err := disk.New(i.network, i.root)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := store.Lock(); err != nil {
		return err
	}
	defer store.Unlock()
	return fn(store)
}

// removeFile drops one reservation; the caller holds the lock.
func (i ipam) removeFile(ip net.IP) error {
	err := os.Remove(filepath.Join(i.dir(), ip.String()))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// capacity counts the addresses host-local can hand out in subnet (the
// gateway excluded) and how many of them are reserved now.
func (i ipam) usage(subnet string) (free int, err error) {
	rs, err := rangeSet(subnet)
	if err != nil {
		return 0, err
	}
	if err := rs.Canonicalize(); err != nil {
		return 0, err
	}
	r := rs[0]
	start, end := ipToUint(r.RangeStart), ipToUint(r.RangeEnd)
	total := int(end - start + 1)
	if gw := ipToUint(r.Gateway); gw >= start && gw <= end {
		total--
	}
	all, err := i.list()
	if err != nil {
		return 0, err
	}
	used := 0
	for _, a := range all {
		if rs.Contains(a.IP) && !a.IP.Equal(r.Gateway) {
			used++
		}
	}
	return total - used, nil
}

func ipToUint(ip net.IP) uint32 {
	ip4 := ip.To4()
	return uint32(ip4[0])<<24 | uint32(ip4[1])<<16 | uint32(ip4[2])<<8 | uint32(ip4[3])
}
