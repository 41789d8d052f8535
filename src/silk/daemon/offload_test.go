package daemon

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/safchain/ethtool"
)

// readOffloads reads a device's features through an ethtool handle of its
// own, opened in the cell's namespace (what `ethtool -k` shows).
func readOffloads(t *testing.T, cell *testCell, name string) map[string]bool {
	t.Helper()
	var e *ethtool.Ethtool
	if err := cell.ns.Do(func() (err error) { e, err = ethtool.NewEthtool(); return err }); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	f, err := e.Features(name)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCreateVTEPSetsOffloads(t *testing.T) {
	cell := newTestCell(t)
	// The kernel's default for a VXLAN device, which the daemon changes.
	cell.ns.Run(t, "ip", "link", "add", "probe-vx", "type", "vxlan", "id", "9", "dstport", "4789", "dev", cell.underlay)
	if !readOffloads(t, cell, "probe-vx")["tx-checksum-ip-generic"] {
		t.Fatal("a new VXLAN device has tx-checksum-ip-generic off already; the test proves nothing")
	}
	cell.ns.Run(t, "ip", "link", "del", "probe-vx")

	createTestVTEP(t, cell, testVTEPConfig(cell), cell17())
	got := readOffloads(t, cell, "silk-vtep")
	for k, v := range VTEPOffloads {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// The same as ethtool(8) reports it.
	out := cell.ns.Run(t, "ethtool", "-k", "silk-vtep")
	if !strings.Contains(out, "tx-checksum-ip-generic: off") {
		t.Errorf("ethtool -k silk-vtep:\n%s", out)
	}

	t.Run("vtep_checksum_offload keeps the kernel's default", func(t *testing.T) {
		other := newTestCell(t)
		cfg := testVTEPConfig(other)
		cfg.VTEPChecksumOffload = true
		createTestVTEP(t, other, cfg, cell17())
		if !readOffloads(t, other, "silk-vtep")["tx-checksum-ip-generic"] {
			t.Error("tx-checksum-ip-generic off with vtep_checksum_offload: true")
		}
	})

	t.Run("a poll puts changed offloads back, and writes nothing when they are right", func(t *testing.T) {
		cell.ns.Run(t, "ethtool", "-K", "silk-vtep", "tx-checksum-ip-generic", "on")
		logger := lager.NewLogger("test")
		counting := &countingFeatures{inner: cell.nl}
		o := &offloadCheck{logger: logger, links: counting, name: "silk-vtep", want: VTEPOffloads}
		if err := o.check(); err != nil {
			t.Fatal(err)
		}
		if readOffloads(t, cell, "silk-vtep")["tx-checksum-ip-generic"] {
			t.Error("tx-checksum-ip-generic still on after a poll")
		}
		if err := o.check(); err != nil {
			t.Fatal(err)
		}
		if counting.changes != 1 {
			t.Errorf("%d changes over two polls, want 1", counting.changes)
		}
	})
}

type countingFeatures struct {
	inner   Features
	changes int
}

func (c *countingFeatures) Features(intf string) (map[string]bool, error) {
	return c.inner.Features(intf)
}

func (c *countingFeatures) Change(intf string, config map[string]bool) error {
	c.changes++
	return c.inner.Change(intf, config)
}

// fakeFeatures is a device's feature table.
type fakeFeatures struct {
	have    map[string]bool
	changed []map[string]bool
	err     error
}

func (f *fakeFeatures) Features(string) (map[string]bool, error) { return f.have, f.err }
func (f *fakeFeatures) Change(_ string, c map[string]bool) error {
	f.changed = append(f.changed, c)
	return nil
}

func TestSetOffloads(t *testing.T) {
	f := &fakeFeatures{have: map[string]bool{"a": true, "b": false, "c": true}}
	names, err := SetOffloads(f, "d", map[string]bool{"a": false, "b": false, "c": false})
	if err != nil || !reflect.DeepEqual(names, []string{"a", "c"}) {
		t.Fatalf("names %v, err %v", names, err)
	}
	if !reflect.DeepEqual(f.changed, []map[string]bool{{"a": false, "c": false}}) {
		t.Errorf("changes %v", f.changed)
	}

	f = &fakeFeatures{have: map[string]bool{"a": false}}
	if names, err := SetOffloads(f, "d", map[string]bool{"a": false}); err != nil || names != nil || f.changed != nil {
		t.Errorf("nothing to change: names %v, err %v, changes %v", names, err, f.changed)
	}
	if _, err := SetOffloads(f, "d", map[string]bool{"zz": false}); err == nil {
		t.Error("an unknown feature is not an error")
	}
	f.err = errors.New("boom")
	if _, err := SetOffloads(f, "d", VTEPOffloads); err == nil {
		t.Error("a failed read is not an error")
	}
}

var _ Links = (*System)(nil)
