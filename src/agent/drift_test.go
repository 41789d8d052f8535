package agent

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/nft"
)

// TestDriftRepairedIPTables: a rule deleted by hand from the vpa-- chain
// is put back by the next poll once the drift check is due, without a
// policy fetch; a poll before that, or with the kernel right, writes
// nothing.
func TestDriftRepairedIPTables(t *testing.T) {
	f := newFixture(t, false, 1)
	f.policies.driftEvery = time.Hour
	f.server.set(policyAB(8080))
	ctx := context.Background()
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	chain := f.policies.enforcer.Chain()
	st, err := f.ipt.Save(ctx, iptables.Filter)
	if err != nil {
		t.Fatal(err)
	}
	var accept iptables.Rule
	for _, r := range st.Rules(chain) {
		if strings.Contains(string(r), "--dport 8080") {
			accept = r
		}
	}
	if err := f.ipt.Apply(ctx, iptables.NewTx(iptables.Filter).Delete(chain, accept)); err != nil {
		t.Fatal(err)
	}
	if err := f.policies.Poll(ctx); err != nil || f.accepts(t, 8080) {
		t.Fatalf("repaired before the drift check was due: %v", err)
	}
	f.policies.driftEvery = time.Nanosecond
	fetches := f.server.fetches
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.accepts(t, 8080) {
		t.Fatalf("drift not repaired:\n%s", f.ipt.Dump(iptables.Filter))
	}
	if f.server.fetches != fetches {
		t.Errorf("the drift check fetched policies")
	}
	before := f.ipt.Dump(iptables.Filter)
	if err := f.policies.Poll(ctx); err != nil || f.ipt.Dump(iptables.Filter) != before {
		t.Errorf("a drift check of a right kernel changed it: %v", err)
	}
}

// countingNFT counts the transactions that reach the fake kernel.
type countingNFT struct {
	*nft.Fake
	writes int
}

func (c *countingNFT) Run(ctx context.Context, tx *knftables.Transaction) error {
	if tx.NumOperations() > 0 {
		c.writes++
	}
	return c.Fake.Run(ctx, tx)
}

// TestDriftRepairedNFTables: in nftables mode the enforcer trusts its
// memory, so an element deleted by hand stays gone until the drift check
// re-reads the table; then it is put back. Idle polls write nothing.
func TestDriftRepairedNFTables(t *testing.T) {
	f := newFixture(t, false, 1)
	k := &countingNFT{Fake: nft.NewFake()}
	f.policies.enforcer = newNFTC2C(k)
	f.policies.driftEvery = time.Hour
	f.server.set(policyAB(8080))
	ctx := context.Background()
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	elements := func() []string {
		st, err := k.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s := st.Sets[c2c.NFTPolicies]
		if s == nil {
			return nil
		}
		var out []string
		for key := range s.Elements {
			out = append(out, key)
		}
		slices.Sort(out)
		return out
	}
	want := elements()
	if len(want) != 1 || !strings.Contains(want[0], "8080") {
		t.Fatalf("policy elements %q", want)
	}
	writes := k.writes
	for range 3 {
		if err := f.policies.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k.writes != writes {
		t.Errorf("idle polls wrote %d transactions", k.writes-writes)
	}
	// By hand: nft delete element inet netman c2c-policies { ... }.
	tx := k.NewTransaction()
	tx.Delete(&knftables.Element{Set: c2c.NFTPolicies, Key: strings.Split(want[0], " . ")})
	if err := k.Fake.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if err := f.policies.Poll(ctx); err != nil || len(elements()) != 0 {
		t.Fatalf("repaired before the drift check was due: %v", err)
	}
	f.policies.driftEvery = time.Nanosecond
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := elements(); !slices.Equal(got, want) {
		t.Fatalf("drift not repaired: %q, want %q", got, want)
	}
	writes = k.writes
	if err := f.policies.Poll(ctx); err != nil || k.writes != writes {
		t.Errorf("a drift check of a right table wrote: %v", err)
	}
}

// TestDriftRepairedPerDestinationChains: with
// iptables_per_destination_chains the policy cycle writes app-b's accept
// into vpa-dst-10.255.1.3 behind a jump from the vpa-- chain, and the
// drift check puts back a rule deleted from that chain by hand.
func TestDriftRepairedPerDestinationChains(t *testing.T) {
	f := newFixture(t, false, 1)
	f.policies.enforcer = iptablesC2C{enforcer: c2c.NewEnforcer(f.ipt), perDst: true}
	f.policies.driftEvery = time.Hour
	f.server.set(policyAB(8080))
	ctx := context.Background()
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	const dst = "vpa-dst-10.255.1.3"
	rules := func() []iptables.Rule {
		st, err := f.ipt.Save(ctx, iptables.Filter)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(st.Rules(f.policies.enforcer.Chain()), iptables.Rule("-d 10.255.1.3/32 -j "+dst)) {
			t.Fatalf("no jump to %s:\n%s", dst, f.ipt.Dump(iptables.Filter))
		}
		return st.Rules(dst)
	}
	want := rules()
	if len(want) != 1 || !strings.Contains(string(want[0]), "--dport 8080 -m mark --mark 0x1 ") {
		t.Fatalf("%s = %q", dst, want)
	}
	if err := f.ipt.Apply(ctx, iptables.NewTx(iptables.Filter).Flush(dst)); err != nil {
		t.Fatal(err)
	}
	f.policies.driftEvery = time.Nanosecond
	if err := f.policies.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rules(); !slices.Equal(got, want) {
		t.Fatalf("drift not repaired: %q", got)
	}
}
