package nft

import (
	"sigs.k8s.io/knftables"
)

// Writes that need no read first, for cni-wrapper-plugin's per-container
// ADD and DEL: each is valid whether or not the objects exist, so a
// retried ADD or DEL converges, and each costs what the container has.

// Put adds rs's sets and chains to tx, created when absent and reset to
// rs's content when present: every set is flushed (a dynamic one is left
// alone) and filled, every chain flushed and filled. Sets come first so
// rules may name them, rules before elements so verdicts may name chains.
func Put(tx *knftables.Transaction, rs *Ruleset) {
	for _, s := range rs.Sets {
		s.add(tx)
		if !s.Dynamic {
			tx.Flush(s.object())
		}
	}
	for _, c := range rs.Chains {
		c.add(tx)
		tx.Flush(&knftables.Chain{Name: c.Name})
	}
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
	}
	for _, s := range rs.Sets {
		for _, e := range s.Elements {
			tx.Add(s.element(e))
		}
	}
}

// AddElements adds rs's set elements to tx, leaving the sets' other
// elements alone (the container's entries in the skeleton's dispatch maps).
// Adding an element that is already there with the same value is a no-op.
func AddElements(tx *knftables.Transaction, rs *Ruleset) {
	for _, s := range rs.Sets {
		for _, e := range s.Elements {
			tx.Add(s.element(e))
		}
	}
}

// DeleteElements deletes rs's set elements (they must exist).
func DeleteElements(tx *knftables.Transaction, rs *Ruleset) {
	for _, s := range rs.Sets {
		for _, e := range s.Elements {
			tx.Delete(s.element(Element{Key: e.Key}))
		}
	}
}

// RemoveChains deletes chains whether or not they exist (each is added,
// flushed, then deleted). Whatever refers to them must be gone by then.
func RemoveChains(tx *knftables.Transaction, names ...string) {
	for _, n := range names {
		tx.Add(&knftables.Chain{Name: n})
		tx.Flush(&knftables.Chain{Name: n})
	}
	for _, n := range names {
		tx.Delete(&knftables.Chain{Name: n})
	}
}

// RemoveSets deletes sets whether or not they exist (each is added with
// its definition, then deleted); run it after the rules naming them are
// gone.
func RemoveSets(tx *knftables.Transaction, sets ...*Set) {
	for _, s := range sets {
		s.add(tx)
		tx.Delete(s.object())
	}
}
