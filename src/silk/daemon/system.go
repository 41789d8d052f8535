package daemon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/safchain/ethtool"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// System is one network namespace's kernel as silk-daemon uses it: a netlink
// handle for links, addresses and every write, and a socket of its own for
// the three dumps each poll makes. The dumps are parsed in place rather than
// into netlink.Route and netlink.Neigh values: at 2,000 cells that
// materialisation, and the garbage collection it caused, was most of the CPU
// an idle poll cost.
type System struct {
	*netlink.Handle
	dumper
	eth *ethtool.Ethtool // the VTEP's offload features
}

// OpenSystem opens the namespace at nsPath (e.g. /run/netns/cell1); ""
// means the process's own.
func OpenSystem(nsPath string) (*System, error) {
	ns := netns.None()
	if nsPath != "" {
		var err error
		if ns, err = netns.GetFromPath(nsPath); err != nil {
			return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	sock, err := nl.GetNetlinkSocketAt(ns, netns.None(), unix.NETLINK_ROUTE)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("open netlink dump socket: %w", err)
	}
	// A dump the kernel never finishes must not hang the poller for ever.
	tv := unix.NsecToTimeval(int64(dumpTimeout))
	if err := sock.SetReceiveTimeout(&tv); err != nil {
		sock.Close()
		h.Close()
		return nil, fmt.Errorf("netlink dump socket timeout: %w", err)
	}
	eth, err := openEthtool(nsPath)
	if err != nil {
		sock.Close()
		h.Close()
		return nil, fmt.Errorf("open ethtool: %w", err)
	}
	return &System{Handle: h, dumper: dumper{sock: sock}, eth: eth}, nil
}

// Features reads a device's ethtool features (ethtool -k).
func (s *System) Features(intf string) (map[string]bool, error) { return s.eth.Features(intf) }

// Change sets a device's ethtool features (ethtool -K).
func (s *System) Change(intf string, config map[string]bool) error {
	return s.eth.Change(intf, config)
}

// Close releases the sockets.
func (s *System) Close() {
	s.Handle.Close()
	s.sock.Close()
	s.eth.Close()
}

// dumpTimeout bounds one dump; they take milliseconds.
const dumpTimeout = 30 * time.Second

// dumper runs netlink dumps on one socket, one at a time.
type dumper struct {
	mu   sync.Mutex
	sock *nl.NetlinkSocket
	seq  uint32
}

// rawData is a request body already in wire form.
type rawData []byte

func (r rawData) Len() int          { return len(r) }
func (r rawData) Serialize() []byte { return r }

func (d *dumper) dump(msgType int, body []byte, resType uint16, fn func([]byte)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	req := nl.NewNetlinkRequest(msgType, unix.NLM_F_DUMP)
	req.AddData(rawData(body))
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: {Seq: d.seq, Socket: d.sock}}
	err := req.ExecuteIter(unix.NETLINK_ROUTE, resType, func(m []byte) bool { fn(m); return true })
	d.seq = req.Sockets[unix.NETLINK_ROUTE].Seq
	return err
}

// Sizes of the fixed headers (struct rtmsg, struct ndmsg) and of an rtattr.
const (
	sizeofRtMsg  = 12
	sizeofNdMsg  = 12
	sizeofRtAttr = 4
)

// ListRoutes calls fn with every main-table route of family (AF_INET,
// AF_INET6) whose output device is link. Multipath routes, which
// silk-daemon never writes, are skipped.
func (d *dumper) ListRoutes(link, family int, fn func(Route)) error {
	body := make([]byte, sizeofRtMsg)
	body[0] = byte(family)
	var bad error
	err := d.dump(unix.RTM_GETROUTE, body, unix.RTM_NEWROUTE, func(m []byte) {
		if len(m) < sizeofRtMsg || int(m[0]) != family {
			return
		}
		dstLen, tos, table, scope := m[1], m[3], uint32(m[4]), m[6]
		flags := binary.NativeEndian.Uint32(m[8:12])
		if flags&unix.RTM_F_CLONED != 0 {
			return
		}
		var r Route
		var dst netip.Addr
		oif := 0
		err := eachAttr(m[sizeofRtMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.RTA_DST:
				dst, _ = netip.AddrFromSlice(v)
			case unix.RTA_GATEWAY:
				r.Gw, _ = netip.AddrFromSlice(v)
			case unix.RTA_PREFSRC:
				r.Src, _ = netip.AddrFromSlice(v)
			case unix.RTA_OIF:
				if len(v) == 4 {
					oif = int(binary.NativeEndian.Uint32(v))
				}
			case unix.RTA_PRIORITY:
				if len(v) == 4 {
					r.Priority = int(binary.NativeEndian.Uint32(v))
				}
			case unix.RTA_TABLE:
				if len(v) == 4 {
					table = binary.NativeEndian.Uint32(v)
				}
			}
		})
		if err != nil {
			bad = err
			return
		}
		if oif != link || table != unix.RT_TABLE_MAIN {
			return
		}
		if !dst.IsValid() { // the default route
			dst = netip.IPv4Unspecified()
			if family == unix.AF_INET6 {
				dst = netip.IPv6Unspecified()
			}
		}
		r.Dst = netip.PrefixFrom(dst, int(dstLen))
		r.OnLink = flags&unix.RTNH_F_ONLINK != 0
		r.Scope, r.Tos = scope, int(tos)
		fn(r)
	})
	if err == nil {
		err = bad
	}
	return err
}

// ListNeighbors calls fn with every neighbour of family (AF_INET for ARP,
// AF_INET6 for NDP, AF_BRIDGE for the FDB) on link. ip is the zero Addr when the entry has none;
// mac is nil when it has none and is only valid during the call.
func (d *dumper) ListNeighbors(link, family int, fn func(ip netip.Addr, mac net.HardwareAddr, state int)) error {
	body := make([]byte, sizeofNdMsg)
	body[0] = byte(family)
	binary.NativeEndian.PutUint32(body[4:8], uint32(link))
	var bad error
	err := d.dump(unix.RTM_GETNEIGH, body, unix.RTM_NEWNEIGH, func(m []byte) {
		if len(m) < sizeofNdMsg || int(m[0]) != family || int(int32(binary.NativeEndian.Uint32(m[4:8]))) != link {
			return
		}
		state := int(binary.NativeEndian.Uint16(m[8:10]))
		var ip netip.Addr
		var mac net.HardwareAddr
		err := eachAttr(m[sizeofNdMsg:], func(typ uint16, v []byte) {
			switch typ {
			case unix.NDA_DST:
				if a, ok := netip.AddrFromSlice(v); ok {
					ip = a.Unmap()
				}
			case unix.NDA_LLADDR:
				mac = v
			}
		})
		if err != nil {
			bad = err
			return
		}
		fn(ip, mac, state)
	})
	if err == nil {
		err = bad
	}
	return err
}

var errBadAttr = errors.New("malformed netlink attribute")

// nlaTypeMask strips the nested and byte-order flags from an attribute type.
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// eachAttr walks a run of rtattrs.
func eachAttr(b []byte, fn func(typ uint16, v []byte)) error {
	for len(b) >= sizeofRtAttr {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < sizeofRtAttr || l > len(b) {
			return errBadAttr
		}
		fn(binary.NativeEndian.Uint16(b[2:4])&nlaTypeMask, b[sizeofRtAttr:l])
		next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
		if next >= len(b) {
			return nil
		}
		b = b[next:]
	}
	return nil
}
