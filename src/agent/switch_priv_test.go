package agent

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestSwitchBackendsOnKernel: in a fresh namespace, an agent starting in
// nftables mode removes what iptables mode left (vpa--, vpa-dst-, asg- chains and the
// jumps to them, the wrapper's netout-- chain staying), and one starting in
// iptables mode deletes the inet netman table. Both write nothing the
// second time.
func TestSwitchBackendsOnKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	ctx := context.Background()
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "vpasw")
			do := func(fn func() error) {
				t.Helper()
				if err := ns.Do(fn); err != nil {
					t.Fatal(err)
				}
			}
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(t.TempDir(), "iptables.lock")})
			e := c2c.NewEnforcer(d)
			var chain string
			// With iptables_per_destination_chains: vpa-dst-10.255.1.3 too.
			want, err := c2c.PlanChains(c2c.Inputs{
				Containers: []c2c.Container{{Handle: "h1", IP: "10.255.1.2", AppID: "app-a"}, {Handle: "h2", IP: "10.255.1.3", AppID: "app-b"}},
				Policies: []c2c.Policy{{Source: c2c.Endpoint{ID: "app-a", Tag: "0001"},
					Destination: c2c.Destination{ID: "app-b", Tag: "0002", Protocol: "tcp", Start: 8080, End: 8080}}},
			}, nil, true)
			if err != nil || len(want.Dst) != 1 {
				t.Fatalf("plan: %+v %v", want, err)
			}
			do(func() error {
				res, err := e.EnforceChains(ctx, want)
				chain = res.Chain
				return err
			})
			do(func() error {
				return d.Apply(ctx, iptables.NewTx(iptables.Filter).DeclareChain("netout--h1").DeclareChain("asg-h1digest").
					Append("asg-h1digest", "-j REJECT --reject-with icmp-port-unreachable").
					Append("netout--h1", "-j asg-h1digest", "-j REJECT --reject-with icmp-port-unreachable"))
			})
			var removed, kept []string
			do(func() (err error) { removed, kept, err = removeIPTablesChains(ctx, d); return err })
			slices.Sort(removed)
			if want := []string{"asg-h1digest", chain, "vpa-dst-10.255.1.3"}; !slices.Equal(removed, want) || len(kept) != 0 {
				t.Errorf("removed %q kept %q, want %q", removed, kept, want)
			}
			var st *iptables.State
			do(func() (err error) { st, err = d.Save(ctx, iptables.Filter); return err })
			if st.Has(chain) || st.Has("asg-h1digest") || st.Has("vpa-dst-10.255.1.3") || len(st.Rules("FORWARD")) != 0 {
				t.Errorf("iptables chains left:\n%s", st)
			}
			if got := st.Rules("netout--h1"); !st.Has("netout--h1") || len(got) != 1 {
				t.Errorf("the wrapper's netout--h1: %q", got)
			}
			do(func() (err error) { removed, _, err = removeIPTablesChains(ctx, d); return err })
			if len(removed) != 0 {
				t.Errorf("second removal: %q", removed)
			}

			// nftables → iptables.
			var k *nft.Kernel
			do(func() (err error) { k, err = nft.New(); return err })
			do(func() error {
				rs, err := c2c.PlanNFT(c2c.Inputs{AcceptedUDPLogsPerSec: 100}, nil)
				if err != nil {
					return err
				}
				_, err = c2c.NewNFTEnforcer(k).Enforce(ctx, rs, nil)
				return err
			})
			for i, want := range []bool{true, false} {
				var deleted bool
				do(func() (err error) { deleted, err = deleteNFTTable(ctx, k); return err })
				if deleted != want {
					t.Errorf("deleteNFTTable #%d = %v, want %v", i+1, deleted, want)
				}
			}
			var after *nft.State
			do(func() (err error) { after, err = k.Read(ctx); return err })
			if after.Table {
				t.Error("the inet netman table is still there")
			}
		})
	}
}
