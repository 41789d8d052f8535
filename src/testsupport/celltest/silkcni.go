package celltest

import (
	"encoding/json"
	"testing"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// SilkCNI runs silk-cni itself in the cell, with the delegate config the
// wrapper would pass it, and returns its stdout: the silk data path alone,
// with none of the wrapper's enforcement in the way.
func (c *Cell) SilkCNI(command, containerID, netnsPath string) (string, error) {
	conf := c.WrapperConfig().Delegate
	conf["cniVersion"], conf["name"] = "1.0.0", "silk"
	stdin, err := json.Marshal(conf)
	if err != nil {
		return "", err
	}
	return c.execPlugin("silk-cni", command, containerID, netnsPath, stdin)
}

// AddSilkContainer is AddContainer through silk-cni alone (SilkCNI): a
// container with its addresses, routes and neighbours and no policy
// enforcement, for tests of the overlay itself.
func (c *Cell) AddSilkContainer(t testing.TB) *Container {
	t.Helper()
	ns := netnstest.New(t, "k")
	id := netnstest.UniqueName("ctr-")
	out, err := c.SilkCNI("ADD", id, ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	ip, ip6 := resultIPs(t, out)
	ctr := &Container{Cell: c, ID: id, NS: ns, IP: ip, IP6: ip6}
	t.Cleanup(func() {
		if !ctr.deleted {
			if _, err := c.SilkCNI("DEL", id, ns.Path); err != nil {
				t.Errorf("cleanup DEL: %v", err)
			}
		}
	})
	return ctr
}
