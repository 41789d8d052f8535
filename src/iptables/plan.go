package iptables

// Planning helpers: pure functions that add to a Tx the changes that take a
// State to a desired shape. They only touch the chains and rules named, so a
// reconciler that owns a set of chains never disturbs anyone else's.

// SyncChain makes chain hold exactly want. An absent chain is created. An
// existing one is edited in place when the difference is small (rules kept
// at the start and end, the middle deleted by number and re-inserted), else
// reset and refilled; both happen inside the one transaction, so packets
// never see a half-written chain. Deleting by number is only safe because
// the caller owns the chain and holds the lock from the read to the write.
func SyncChain(tx *Tx, cur *State, chain string, want []Rule) {
	c := cur.Chain(chain)
	if c == nil {
		tx.DeclareChain(chain)
		tx.Append(chain, want...)
		return
	}
	old := c.Rules
	p := 0
	for p < len(old) && p < len(want) && old[p] == want[p] {
		p++
	}
	s := 0
	for s < len(old)-p && s < len(want)-p && old[len(old)-1-s] == want[len(want)-1-s] {
		s++
	}
	oldMid := old[p : len(old)-s]
	newMid := want[p : len(want)-s]
	if len(oldMid) == 0 && len(newMid) == 0 {
		return
	}
	if len(oldMid)+len(newMid) > len(want)+1 {
		tx.DeclareChain(chain)
		tx.Append(chain, want...)
		return
	}
	for i := len(oldMid); i >= 1; i-- {
		tx.DeleteNum(chain, p+i)
	}
	if s == 0 {
		tx.Append(chain, newMid...)
	} else {
		tx.InsertInOrder(chain, p+1, newMid...)
	}
}

// EnsureAppended appends rule to chain unless chain already holds it.
func EnsureAppended(tx *Tx, cur *State, chain string, rule Rule) {
	if !cur.Contains(chain, rule) {
		tx.Append(chain, rule)
	}
}

// EnsureInserted inserts rule at pos in chain unless chain already holds it
// (anywhere).
func EnsureInserted(tx *Tx, cur *State, chain string, pos int, rule Rule) {
	if !cur.Contains(chain, rule) {
		tx.Insert(chain, pos, rule)
	}
}

// DeleteMatching deletes, by rule text, every rule of chain for which match
// is true (each occurrence of a duplicated rule too). Deleting by text, not
// number, keeps it safe in chains other programs also write (built-in ones).
func DeleteMatching(tx *Tx, cur *State, chain string, match func(Rule) bool) int {
	n := 0
	for _, r := range cur.Rules(chain) {
		if match(r) {
			tx.Delete(chain, r)
			n++
		}
	}
	return n
}

// DeleteJumps deletes every rule in the parent chains that jumps or goes to
// target.
func DeleteJumps(tx *Tx, cur *State, target string, parents ...string) int {
	n := 0
	for _, p := range parents {
		n += DeleteMatching(tx, cur, p, func(r Rule) bool {
			t, _ := r.Target()
			return t == target
		})
	}
	return n
}

// RemoveChains flushes every existing chain in chains, then deletes those no
// longer referenced once the transaction has run: references from inside the
// set go with the flush, and rule deletions already in tx count. A chain that
// some other chain still references is left empty rather than failing the
// whole transaction; its name is returned so the caller can report it (its
// owner removes the reference later).
func RemoveChains(tx *Tx, cur *State, chains ...string) (kept []string) {
	inSet := map[string]bool{}
	var present []string
	for _, c := range chains {
		if cur.Has(c) && !inSet[c] {
			inSet[c] = true
			present = append(present, c)
		}
	}
	for _, c := range present {
		tx.Flush(c)
	}
	pending := tx.pendingDeletes()
	// One pass over the table for references into the set from outside.
	referenced := map[string]bool{}
	for _, c := range cur.Chains() {
		if inSet[c.Name] {
			continue
		}
		for _, r := range c.Rules {
			t, _ := r.Target()
			if !inSet[t] {
				continue
			}
			key := "-D " + c.Name + " " + string(r)
			if pending[key] > 0 {
				pending[key]--
				continue
			}
			referenced[t] = true
		}
	}
	for _, c := range present {
		if referenced[c] {
			kept = append(kept, c)
			continue
		}
		tx.DeleteChain(c)
	}
	return kept
}

func (t *Tx) pendingDeletes() map[string]int {
	m := map[string]int{}
	for _, l := range t.lines {
		if len(l) > 3 && l[:3] == "-D " {
			m[l]++
		}
	}
	return m
}
