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
	st, _ := diff(tx, cur, want, scope, nil)
	return st
}

// changes is what a diff decided, so the Enforcer can bring its memory up
// to date by the change instead of rebuilding it from the whole Ruleset.
type changes struct {
	fresh     []*Set              // sets added or recreated: take want's content
	deleted   map[string][]string // set → keys deleted (or changing value)
	added     map[string][]Element
	staleSets []string
	staleCh   []string
	written   []*Chain // chains added or rewritten
}

// diff is Diff, recording its changes. With a delta (want.Delta, when cur
// is the State of the Ruleset of generation delta.From) the elements of
// sets that stay are not compared: the delta names those that changed,
// each checked against cur only.
func diff(tx *knftables.Transaction, cur *State, want *Ruleset, scope Scope, delta *Delta) (Stats, *changes) {
	if cur == nil {
		cur = NewState()
	}
	var st Stats
	ch := &changes{deleted: map[string][]string{}, added: map[string][]Element{}}
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
	// Only the stale names are sorted: with a log chain per (tag,
	// destination) the chains run to tens of thousands.
	for n, c := range cur.Chains {
		if wantChains[n] == nil && !c.Base && scope.Chain != nil && scope.Chain(n) {
			ch.staleCh = append(ch.staleCh, n)
		}
	}
	slices.Sort(ch.staleCh)
	for n := range cur.Sets {
		if wantSets[n] == nil && scope.Set != nil && scope.Set(n) {
			ch.staleSets = append(ch.staleSets, n)
		}
	}
	slices.Sort(ch.staleSets)

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
		var dels []string
		if delta != nil {
			dels, ch.added[s.Name] = elementChanges(cs, delta.Sets[s.Name])
		} else {
			dels, ch.added[s.Name] = elementDiff(cs, s)
		}
		slices.Sort(dels)
		for _, k := range dels {
			tx.Delete(s.element(Element{Key: k}))
		}
		st.ElementsDeleted += len(dels)
		if len(dels) > 0 {
			ch.deleted[s.Name] = dels
		}
	}
	// 2. Stale maps lose their elements now, so the chains their verdicts
	// name can be deleted below.
	for _, n := range ch.staleSets {
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
			ch.fresh = append(ch.fresh, s)
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
		ch.written = append(ch.written, c)
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
		st.Rules += len(c.Rules)
		if cc != nil {
			st.ChainsWritten++
		}
	}
	// 6. New elements and new values (found in step 1 for sets that stay).
	for _, s := range want.Sets {
		if s.Dynamic {
			continue
		}
		els := ch.added[s.Name]
		if cur.Sets[s.Name] == nil || recreate[s.Name] {
			els = s.Elements
		}
		for _, e := range els {
			tx.Add(s.element(e))
		}
		st.ElementsAdded += len(els)
	}
	// 7. Stale chains: emptied first, so references among them go too.
	for _, n := range ch.staleCh {
		if len(cur.Chains[n].Rules) > 0 && !flushed[n] {
			tx.Flush(&knftables.Chain{Name: n})
		}
	}
	for _, n := range ch.staleCh {
		tx.Delete(&knftables.Chain{Name: n})
		st.ChainsDeleted++
	}
	// 8. Stale sets, now that no rule refers to them.
	for _, n := range ch.staleSets {
		tx.Delete((&Set{Name: n, Value: cur.Sets[n].Value}).object())
		st.SetsDeleted++
	}
	return st, ch
}

// update brings st (what the scope held) to what it holds once a diff
// with changes ch has run: O(change), chains that did not change are not
// touched.
func (st *State) update(ch *changes) {
	st.Table = true
	for _, n := range ch.staleCh {
		delete(st.Chains, n)
	}
	for _, n := range ch.staleSets {
		delete(st.Sets, n)
	}
	for _, c := range ch.written {
		st.Chains[c.Name] = &ChainState{Name: c.Name, Base: c.Base != nil, Rules: c.Rules}
	}
	st.Apply(&Ruleset{Sets: ch.fresh})
	for name, keys := range ch.deleted {
		for _, k := range keys {
			delete(st.Sets[name].Elements, k)
		}
	}
	for name, els := range ch.added {
		for _, e := range els {
			st.Sets[name].Elements[e.Key] = e.Value
		}
	}
}

// elementDiff compares a set's elements with what cur holds: the keys to
// delete (gone, or changing value) and the elements to add. It costs a pass
// over s; a map of s's keys is only built when some element of cur is
// missing from it.
func elementDiff(cs *SetState, s *Set) (dels []string, adds []Element) {
	same := 0
	for _, e := range s.Elements {
		v, ok := cs.Elements[e.Key]
		switch {
		case ok && v == e.Value:
			same++
			continue
		case ok:
			dels = append(dels, e.Key)
		}
		adds = append(adds, e)
	}
	if same+len(dels) < len(cs.Elements) {
		wantKeys := make(map[string]struct{}, len(s.Elements))
		for _, e := range s.Elements {
			wantKeys[e.Key] = struct{}{}
		}
		for k := range cs.Elements {
			if _, ok := wantKeys[k]; !ok {
				dels = append(dels, k)
			}
		}
	}
	return dels, adds
}

// elementChanges is elementDiff for a set whose changes a Delta lists:
// each is checked against cur, so that the transaction is valid whatever
// cur holds, and nothing else is looked at. O(change).
func elementChanges(cs *SetState, d *SetDelta) (dels []string, adds []Element) {
	if d == nil {
		return nil, nil
	}
	for _, k := range d.Del {
		if _, ok := cs.Elements[k]; ok {
			dels = append(dels, k)
		}
	}
	for _, e := range d.Put {
		v, ok := cs.Elements[e.Key]
		switch {
		case ok && v == e.Value:
			continue
		case ok:
			dels = append(dels, e.Key)
		}
		adds = append(adds, e)
	}
	return dels, adds
}

func sameDefinition(cs *SetState, s *Set) bool {
	return cs.Type == s.Type && cs.Value == s.Value && cs.Interval == s.Interval && cs.Dynamic == s.Dynamic
}
