package nft

import (
	"maps"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Scope names the objects one writer manages. A diff deletes the objects in
// scope that the desired Ruleset no longer holds and never touches objects
// outside it (other than Borrowed chains the Ruleset names).
type Scope struct {
	Chain func(name string) bool
	Set   func(name string) bool
}

// PrefixScope is the scope of every chain and set whose name is one of
// names or starts with one of prefixes.
func PrefixScope(names []string, prefixes ...string) Scope {
	match := func(n string) bool {
		if slices.Contains(names, n) {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(n, p) {
				return true
			}
		}
		return false
	}
	return Scope{Chain: match, Set: match}
}

// Stats counts what a diff put in its transaction.
type Stats struct {
	ChainsAdded, ChainsWritten, ChainsDeleted int
	SetsAdded, SetsDeleted                    int
	ElementsAdded, ElementsDeleted            int
	Rules                                     int // rules written
	// MissingBorrowed are borrowed chains absent from the current state,
	// whose rules were therefore not written.
	MissingBorrowed []string
}

// Changed reports whether the diff wrote anything.
func (s Stats) Changed() bool {
	return s.ChainsAdded+s.ChainsWritten+s.ChainsDeleted+s.SetsAdded+s.SetsDeleted+s.ElementsAdded+s.ElementsDeleted > 0
}

// Diff adds to tx the operations that make the objects of scope in cur
// equal to want, and nothing else: a set whose elements changed gets those
// elements deleted or added, a chain whose rules changed is flushed and
// refilled, new objects are added and objects gone from want are deleted.
// An unchanged object costs nothing, so a change costs O(change) whatever
// the table holds. The order inside the transaction keeps every step valid:
// element deletions before additions (interval elements must not overlap),
// definitions before the rules and elements that refer to them, and stale
// references gone before the chains and sets they refer to are deleted.
//
// A set whose definition changed (a netman upgrade) is deleted and added
// again; every chain of the scope is then flushed first and refilled, since
// only the scope's own rules refer to its sets.
func Diff(tx *knftables.Transaction, cur *State, want *Ruleset, scope Scope) Stats {
	if cur == nil {
		cur = NewState()
	}
	var st Stats
	wantChains := make(map[string]*Chain, len(want.Chains))
	for _, c := range want.Chains {
		wantChains[c.Name] = c
	}
	wantSets := make(map[string]*Set, len(want.Sets))
	recreate := map[string]bool{}
	for _, s := range want.Sets {
		wantSets[s.Name] = s
		if cs := cur.Sets[s.Name]; cs != nil && !sameDefinition(cs, s) {
			recreate[s.Name] = true
		}
	}
	var staleChains, staleSets []string
	for _, n := range slices.Sorted(maps.Keys(cur.Chains)) {
		if wantChains[n] == nil && !cur.Chains[n].Base && scope.Chain != nil && scope.Chain(n) {
			staleChains = append(staleChains, n)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(cur.Sets)) {
		if wantSets[n] == nil && scope.Set != nil && scope.Set(n) {
			staleSets = append(staleSets, n)
		}
	}

	// Chains emptied up front: all of the scope when a set is recreated.
	flushed := map[string]bool{}
	if len(recreate) > 0 {
		for _, n := range slices.Sorted(maps.Keys(cur.Chains)) {
			c := cur.Chains[n]
			if (scope.Chain != nil && scope.Chain(n)) || (wantChains[n] != nil && wantChains[n].Borrowed) {
				if !c.Base && len(c.Rules) > 0 {
					tx.Flush(&knftables.Chain{Name: n})
					flushed[n] = true
				}
			}
		}
	}

	// 1. Elements that go or change value, from sets that stay.
	for _, s := range want.Sets {
		cs := cur.Sets[s.Name]
		if cs == nil || recreate[s.Name] || s.Dynamic {
			continue
		}
		wantEl := make(map[string]string, len(s.Elements))
		for _, e := range s.Elements {
			wantEl[e.Key] = e.Value
		}
		for _, k := range slices.Sorted(maps.Keys(cs.Elements)) {
			if v, ok := wantEl[k]; !ok || v != cs.Elements[k] {
				tx.Delete(s.element(Element{Key: k}))
				st.ElementsDeleted++
			}
		}
	}
	// 2. Stale maps lose their elements now, so the chains their verdicts
	// name can be deleted below.
	for _, n := range staleSets {
		if cs := cur.Sets[n]; len(cs.Elements) > 0 {
			tx.Flush((&Set{Name: n, Value: cs.Value}).object())
		}
	}
	// 3. Set definitions.
	for _, s := range want.Sets {
		if recreate[s.Name] {
			tx.Delete(s.object())
			st.SetsDeleted++
		}
		if cur.Sets[s.Name] == nil || recreate[s.Name] {
			s.add(tx)
			st.SetsAdded++
		}
	}
	// 4. New chains, empty, so rules and verdicts may name them.
	for _, c := range want.Chains {
		if cur.Chains[c.Name] == nil && !c.Borrowed {
			c.add(tx)
			st.ChainsAdded++
		}
	}
	// 5. Rules.
	for _, c := range want.Chains {
		cc := cur.Chains[c.Name]
		if cc == nil && c.Borrowed {
			st.MissingBorrowed = append(st.MissingBorrowed, c.Name)
			continue
		}
		if cc != nil && !flushed[c.Name] && slices.Equal(cc.Rules, c.Rules) {
			continue
		}
		if cc != nil && !flushed[c.Name] && len(cc.Rules) > 0 {
			tx.Flush(&knftables.Chain{Name: c.Name})
		}
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
		st.Rules += len(c.Rules)
		if cc != nil {
			st.ChainsWritten++
		}
	}
	// 6. New elements and new values.
	for _, s := range want.Sets {
		if s.Dynamic {
			continue
		}
		cs := cur.Sets[s.Name]
		for _, e := range s.Elements {
			if cs != nil && !recreate[s.Name] {
				if v, ok := cs.Elements[e.Key]; ok && v == e.Value {
					continue
				}
			}
			tx.Add(s.element(e))
			st.ElementsAdded++
		}
	}
	// 7. Stale chains: emptied first, so references among them go too.
	for _, n := range staleChains {
		if len(cur.Chains[n].Rules) > 0 && !flushed[n] {
			tx.Flush(&knftables.Chain{Name: n})
		}
	}
	for _, n := range staleChains {
		tx.Delete(&knftables.Chain{Name: n})
		st.ChainsDeleted++
	}
	// 8. Stale sets, now that no rule refers to them.
	for _, n := range staleSets {
		tx.Delete((&Set{Name: n, Value: cur.Sets[n].Value}).object())
		st.SetsDeleted++
	}
	return st
}

func sameDefinition(cs *SetState, s *Set) bool {
	return cs.Type == s.Type && cs.Value == s.Value && cs.Interval == s.Interval && cs.Dynamic == s.Dynamic
}
