// Package netlinkx owns what netman's netlink users share: a dump the kernel
// interrupted is repeated. When a table changes while the kernel streams it
// (NLM_F_DUMP_INTR), netlink returns ErrDumpInterrupted (which also matches
// EINTR) with a list that may miss or repeat entries; taking that list as the
// truth makes a reconciler add or delete the wrong things, and failing on it
// makes a busy cell flap. Every dump netman makes goes through Retry or one of
// the typed wrappers here.
package netlinkx

import (
	"errors"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Attempts bounds the tries of one dump: an interrupted dump is rare and the
// next one almost always completes, but a table that never stops changing
// must not hold its reader for ever.
const Attempts = 5

// Interrupted reports a dump the kernel interrupted: netlink's
// ErrDumpInterrupted, or a bare EINTR from the socket.
func Interrupted(err error) bool {
	return errors.Is(err, netlink.ErrDumpInterrupted) || errors.Is(err, unix.EINTR)
}

// Retry runs dump until it ends without an interruption, at most Attempts
// times, and returns its last error. dump must start its result over on each
// call (reset what it appends to).
func Retry(dump func() error) error {
	var err error
	for range Attempts {
		if err = dump(); !Interrupted(err) {
			return err
		}
	}
	return err
}

// List is Retry for a dump that returns its entries. After Attempts
// interruptions it returns the last (possibly incomplete) list with the
// error, as netlink does, so a caller may still use it.
func List[T any](dump func() ([]T, error)) ([]T, error) {
	var out []T
	err := Retry(func() error {
		var err error
		out, err = dump()
		return err
	})
	return out, err
}

// LinkLister, AddrLister, NeighLister and RouteLister are the dumps of a
// *netlink.Handle (or of Host, or of a test's stand-in).
type (
	LinkLister interface {
		LinkList() ([]netlink.Link, error)
	}
	AddrLister interface {
		AddrList(link netlink.Link, family int) ([]netlink.Addr, error)
	}
	NeighLister interface {
		NeighList(linkIndex, family int) ([]netlink.Neigh, error)
	}
	RouteLister interface {
		RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	}
)

// LinkList is h.LinkList, retried.
func LinkList(h LinkLister) ([]netlink.Link, error) {
	return List(h.LinkList)
}

// AddrList is h.AddrList, retried.
func AddrList(h AddrLister, link netlink.Link, family int) ([]netlink.Addr, error) {
	return List(func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
}

// NeighList is h.NeighList, retried.
func NeighList(h NeighLister, linkIndex, family int) ([]netlink.Neigh, error) {
	return List(func() ([]netlink.Neigh, error) { return h.NeighList(linkIndex, family) })
}

// RouteListFiltered is h.RouteListFiltered, retried.
func RouteListFiltered(h RouteLister, family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	return List(func() ([]netlink.Route, error) { return h.RouteListFiltered(family, filter, filterMask) })
}

// Host is the calling thread's network namespace through netlink's
// package-level functions, for code that holds no handle of its own.
var Host host

type host struct{}

func (host) LinkList() ([]netlink.Link, error) { return netlink.LinkList() }
func (host) AddrList(link netlink.Link, family int) ([]netlink.Addr, error) {
	return netlink.AddrList(link, family)
}
func (host) NeighList(linkIndex, family int) ([]netlink.Neigh, error) {
	return netlink.NeighList(linkIndex, family)
}
func (host) RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error) {
	return netlink.RouteListFiltered(family, filter, filterMask)
}
