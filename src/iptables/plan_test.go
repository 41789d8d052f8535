package iptables_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
)

func rulesN(prefix string, n int) []iptables.Rule {
	out := make([]iptables.Rule, n)
	for i := range out {
		out[i] = iptables.Rule(fmt.Sprintf("-s 10.0.%d.%d/32 -j ACCEPT", len(prefix), i))
	}
	return out
}

func TestSyncChain(t *testing.T) {
	base := rulesN("a", 10)
	insertMid := append(append(append([]iptables.Rule{}, base[:5]...), "-p tcp -j DROP", "-p udp -j DROP"), base[5:]...)
	deleteMid := append(append([]iptables.Rule{}, base[:3]...), base[6:]...)
	replaceOne := append([]iptables.Rule{}, base...)
	replaceOne[4] = "-p icmp -j DROP"
	for _, tc := range []struct {
		name      string
		have      []iptables.Rule // nil: chain absent
		want      []iptables.Rule
		wantLines int // changes in the transaction
	}{
		{"absent chain", nil, base, 11},
		{"absent chain, empty", nil, nil, 1},
		{"identical", base, base, 0},
		{"append at end", base[:8], base, 2},
		{"insert in middle", base, insertMid, 2},
		{"insert at top", base[2:], base, 2},
		{"delete in middle", base, deleteMid, 3},
		{"delete at end", base, base[:7], 3},
		{"replace one", base, replaceOne, 2},
		{"empty it", base, nil, 1},
		{"rewrite", base, rulesN("bb", 10), 11},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tables := iptablestest.New()
			if tc.have != nil {
				if err := tables.Apply(t.Context(), iptables.NewTx(iptables.Filter).DeclareChain("own").Append("own", tc.have...)); err != nil {
					t.Fatal(err)
				}
			}
			var lines []string
			_, err := tables.Update(t.Context(), iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
				tx := iptables.NewTx(iptables.Filter)
				iptables.SyncChain(tx, cur, "own", tc.want)
				lines = tx.Lines()
				return tx, nil
			})
			if err != nil {
				t.Fatal(err)
			}
			st, _ := tables.Save(t.Context(), iptables.Filter)
			if diff := cmp.Diff(tc.want, st.Rules("own")); diff != "" && !(len(tc.want) == 0 && len(st.Rules("own")) == 0) {
				t.Errorf("chain (-want +got):\n%s", diff)
			}
			if !st.Has("own") {
				t.Error("chain missing")
			}
			if len(lines) != tc.wantLines {
				t.Errorf("%d changes, want %d:\n%s", len(lines), tc.wantLines, strings.Join(lines, "\n"))
			}
		})
	}
}

func TestRemoveChainsLeavesForeignReferencedChain(t *testing.T) {
	tables := iptablestest.New()
	setup := iptables.NewTx(iptables.Filter).
		DeclareChain("own1").DeclareChain("own2").DeclareChain("own-log").DeclareChain("foreign").
		Append("FORWARD", "-j own1", "-s 1.1.1.1/32 -j ACCEPT", "-j own1").
		Append("INPUT", "-j own2").
		Append("own1", "-j own-log", "-j own2").
		Append("own2", "-j ACCEPT").
		Append("own-log", "-j ACCEPT").
		Append("foreign", "-g own-log")
	if err := tables.Apply(t.Context(), setup); err != nil {
		t.Fatal(err)
	}
	var kept []string
	_, err := tables.Update(t.Context(), iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		tx := iptables.NewTx(iptables.Filter)
		for _, c := range []string{"own1", "own2", "own-log", "absent"} {
			iptables.DeleteJumps(tx, cur, c, "INPUT", "FORWARD")
		}
		kept = iptables.RemoveChains(tx, cur, "own1", "own2", "own-log", "absent")
		return tx, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(kept, []string{"own-log"}) {
		t.Errorf("kept %q", kept)
	}
	want := `*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:own-log - [0:0]
:foreign - [0:0]
-A FORWARD -s 1.1.1.1/32 -j ACCEPT
-A foreign -g own-log
COMMIT
`
	if diff := cmp.Diff(want, tables.Dump(iptables.Filter)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEnsureAndDeleteMatching(t *testing.T) {
	tables := iptablestest.New()
	for i := 0; i < 2; i++ { // the second round changes nothing
		_, err := tables.Update(t.Context(), iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
			tx := iptables.NewTx(iptables.Filter)
			iptables.EnsureAppended(tx, cur, "FORWARD", "-j ACCEPT")
			iptables.EnsureInserted(tx, cur, "FORWARD", 1, "-p tcp -j DROP")
			if i == 1 && !tx.Empty() {
				t.Errorf("second round not empty: %q", tx.Lines())
			}
			return tx, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	st, _ := tables.Save(t.Context(), iptables.Filter)
	if got := st.Rules("FORWARD"); !cmp.Equal(got, []iptables.Rule{"-p tcp -j DROP", "-j ACCEPT"}) {
		t.Errorf("FORWARD %q", got)
	}
	_, err := tables.Update(t.Context(), iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		tx := iptables.NewTx(iptables.Filter)
		if n := iptables.DeleteMatching(tx, cur, "FORWARD", func(r iptables.Rule) bool { return strings.Contains(string(r), "tcp") }); n != 1 {
			t.Errorf("deleted %d", n)
		}
		return tx, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	st, _ = tables.Save(t.Context(), iptables.Filter)
	if got := st.Rules("FORWARD"); !cmp.Equal(got, []iptables.Rule{"-j ACCEPT"}) {
		t.Errorf("FORWARD %q", got)
	}
}
