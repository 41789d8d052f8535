package daemon

import (
	"sync"

	"github.com/vishvananda/netlink"
)

type fakeKernel = FakeKernel

func newFakeKernel() *fakeKernel { return NewFakeKernel() }

// countingKernel counts the writes made through it to a real kernel.
type countingKernel struct {
	Kernel
	mu     sync.Mutex
	writes int
}

func (c *countingKernel) count() {
	c.mu.Lock()
	c.writes++
	c.mu.Unlock()
}

func (c *countingKernel) Writes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.writes
}

func (c *countingKernel) RouteReplace(r *netlink.Route) error {
	c.count()
	return c.Kernel.RouteReplace(r)
}
func (c *countingKernel) RouteDel(r *netlink.Route) error { c.count(); return c.Kernel.RouteDel(r) }
func (c *countingKernel) NeighSet(n *netlink.Neigh) error { c.count(); return c.Kernel.NeighSet(n) }
func (c *countingKernel) NeighDel(n *netlink.Neigh) error { c.count(); return c.Kernel.NeighDel(n) }
