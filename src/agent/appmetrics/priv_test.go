package appmetrics

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// trafficCell is a cell forwarding between two app containers, src
// (10.255.1.2, app-a) and dst (10.255.1.3, app-b), where dst listens on
// 8080 and 8081.
type trafficCell struct {
	cell     *nfttest.Cell
	src, dst *nfttest.Container
	a, b     Instance
}

func newTrafficCell(t *testing.T) *trafficCell {
	c := &trafficCell{cell: nfttest.NewCell(t)}
	c.src = c.cell.AddContainer(t, "10.255.1.2")
	c.dst = c.cell.AddContainer(t, "10.255.1.3")
	c.a = Instance{Handle: netnstest.UniqueName("ha"), IP: "10.255.1.2", AppID: "app-a", SpaceID: "space-1", OrgID: "org-1", Index: "0"}
	c.b = Instance{Handle: netnstest.UniqueName("hb"), IP: "10.255.1.3", AppID: "app-b", SpaceID: "space-2", OrgID: "org-1", Index: "0"}
	nfttest.Listen(t, c.dst.NS, "10.255.1.3:8080")
	nfttest.Listen(t, c.dst.NS, "10.255.1.3:8081")
	return c
}

// exercise syncs the counting rules, makes one allowed connection from
// a to b (8080) and one that the cell's filter drops (8081: deny, set up
// by the caller), and checks that the series of each app moved.
func (c *trafficCell) exercise(t *testing.T, dp DataPlane) *Collector {
	t.Helper()
	ctx := context.Background()
	col := NewCollector(dp, 0)
	c.cell.Do(t, func() error { return col.Sync(ctx, []Instance{c.a, c.b}) })
	if !nfttest.Connects(t, c.src.NS, "10.255.1.3:8080") {
		t.Fatal("the allowed connection failed")
	}
	if nfttest.Connects(t, c.src.NS, "10.255.1.3:8081") {
		t.Fatal("the denied connection got through")
	}
	var series []Series
	c.cell.Do(t, func() (err error) { series, err = col.Collect(ctx); return err })
	got := map[string]uint64{}
	for _, s := range series {
		got[s.Instance.AppID+"/"+s.Family+"/"+s.Direction+"/"+s.Verdict] = s.Value
	}
	for _, k := range []string{
		"app-a/" + FamilyBytes + "/out/", "app-a/" + FamilyPackets + "/out/",
		"app-a/" + FamilyBytes + "/in/", // the SYN-ACK and the rest
		"app-b/" + FamilyBytes + "/in/", "app-b/" + FamilyPackets + "/in/", "app-b/" + FamilyBytes + "/out/",
	} {
		if got[k] == 0 {
			t.Errorf("%s = 0 after traffic", k)
		}
	}
	for k, want := range map[string]uint64{
		"app-a/" + FamilyConnections + "/out/allowed": 1,
		"app-b/" + FamilyConnections + "/in/allowed":  1,
		"app-a/" + FamilyConnections + "/in/allowed":  0,
		"app-b/" + FamilyConnections + "/out/allowed": 0,
		"app-a/" + FamilyConnections + "/in/denied":   0,
		"app-b/" + FamilyConnections + "/out/denied":  0,
	} {
		if got[k] != want {
			t.Errorf("%s = %d, want %d", k, got[k], want)
		}
	}
	// The dropped SYN is retransmitted within the dial's second: at least
	// one attempt, each a denied connection.
	for _, k := range []string{"app-a/" + FamilyConnections + "/out/denied", "app-b/" + FamilyConnections + "/in/denied"} {
		if got[k] < 1 {
			t.Errorf("%s = %d, want at least 1", k, got[k])
		}
	}
	if t.Failed() {
		t.Logf("series: %v", got)
	}
	return col
}

func TestIPTablesCountsPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range []iptables.Flavor{iptables.FlavorNFT, iptables.FlavorLegacy} {
		t.Run(string(fl), func(t *testing.T) {
			netnstest.RequireIPTables(t, fl)
			c := newTrafficCell(t)
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(t.TempDir(), "iptables.lock")})
			ipt, _, _ := d.Binaries()
			c.cell.NS.Run(t, ipt, "-A", "FORWARD", "-d", "10.255.1.3/32", "-p", "tcp", "--dport", "8081", "-j", "DROP")
			dp := IPTables{Driver: d}
			c.exercise(t, dp)
			ctx := context.Background()

			// The rules read back as planned: a second sync writes nothing.
			var cur *iptables.State
			c.cell.Do(t, func() (err error) { cur, err = d.Save(ctx, iptables.Mangle); return err })
			if tx := PlanIPTables(cur, []Instance{c.a, c.b}); !tx.Empty() {
				t.Errorf("a second sync would write:\n%s", tx)
			}
			// b leaves: its rules go, a's keep their counters.
			var before, after map[string]Counts
			c.cell.Do(t, func() (err error) { before, err = dp.Read(ctx); return err })
			c.cell.Do(t, func() error { return dp.Sync(ctx, []Instance{c.a}) })
			c.cell.Do(t, func() (err error) { after, err = dp.Read(ctx); return err })
			if _, ok := after[c.b.Handle]; ok {
				t.Errorf("b still counted after it left: %+v", after)
			}
			if after[c.a.Handle].OutBytes < before[c.a.Handle].OutBytes || after[c.a.Handle].OutBytes == 0 {
				t.Errorf("a's counters reset when b left: %+v then %+v", before[c.a.Handle], after[c.a.Handle])
			}
			c.cell.Do(t, func() (err error) { cur, err = d.Save(ctx, iptables.Mangle); return err })
			c.cell.Do(t, func() error { return d.Apply(ctx, RemoveIPTables(cur)) })
			c.cell.Do(t, func() (err error) { cur, err = d.Save(ctx, iptables.Mangle); return err })
			if cur.Has(ChainSeen) || cur.Has(ChainPost) || len(cur.Rules("FORWARD"))+len(cur.Rules("POSTROUTING")) != 0 {
				t.Errorf("left after removal:\n%s", cur)
			}
		})
	}
}

func TestNFTCountsPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	c := newTrafficCell(t)
	c.cell.NS.Run(t, "nft", "add table inet deny; add chain inet deny f { type filter hook forward priority 0 ; }; add rule inet deny f ip daddr 10.255.1.3 tcp dport 8081 drop")
	dp := &NFT{}
	c.exercise(t, dp)
	ctx := context.Background()

	// A restarted agent keeps the counters of the containers still there;
	// b leaving takes its elements, and its IP, reused by c, counts from
	// zero.
	var before, after map[string]Counts
	c.cell.Do(t, func() (err error) { before, err = dp.Read(ctx); return err })
	restarted := &NFT{}
	reuse := Instance{Handle: netnstest.UniqueName("hc"), IP: c.b.IP, AppID: "app-c"}
	c.cell.Do(t, func() error { return restarted.Sync(ctx, []Instance{c.a, reuse}) })
	c.cell.Do(t, func() (err error) { after, err = restarted.Read(ctx); return err })
	if got, was := after[c.a.Handle], before[c.a.Handle]; got.OutBytes < was.OutBytes || got.OutBytes == 0 {
		t.Errorf("a's counters after a restart: %+v, before %+v", got, was)
	}
	if got := after[reuse.Handle]; got != (Counts{}) {
		t.Errorf("the reused IP's new container starts at %+v, want zero", got)
	}
	if _, ok := after[c.b.Handle]; ok {
		t.Errorf("b still counted: %+v", after)
	}

	// netman's table reads back with the counting objects in it (the
	// enforcers' full resync reads the whole table).
	var k *nft.Kernel
	c.cell.Do(t, func() (err error) { k, err = nft.New(); return err })
	var st *nft.State
	c.cell.Do(t, func() (err error) { st, err = k.Read(ctx); return err })
	if s := st.Sets[SetIn]; s == nil || len(s.Elements) != 2 {
		t.Errorf("Read: %s = %+v, want 2 elements", SetIn, s)
	}
	c.cell.Do(t, func() error { return runNFT(ctx, RemoveNFT()) })
	c.cell.Do(t, func() (err error) { st, err = k.Read(ctx); return err })
	for name := range st.Sets {
		t.Errorf("set %s left after removal", name)
	}
}
