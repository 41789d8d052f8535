package nft

import (
	"context"
	"errors"
	"slices"
	"sync"

	"sigs.k8s.io/knftables"
)

// Enforcer keeps one writer's part of the table (its Scope) equal to the
// Rulesets it is given, one transaction per call.
//
// It remembers what it last enforced. While that memory is good, a call
// diffs the new Ruleset against it and writes only the difference, without
// reading the kernel: an unchanged Ruleset runs nothing at all. When the
// memory is not good (at start, after Invalidate, or after any failed run:
// someone may have changed the table, or a cancelled nft may have
// committed), it reads the whole table and diffs against that, re-asserting
// the skeleton too, so a restarted agent adopts what is there and writes
// nothing when it is right.
//
// A Ruleset carrying a Delta from the generation the memory holds (a
// planner that keeps its previous result, as c2c.NFTPlanner does) is
// written without comparing its sets' elements at all: only the changed
// elements the Delta names are checked against the memory.
type Enforcer struct {
	driver Driver
	scope  Scope

	mu    sync.Mutex
	mem   *State
	valid bool
	// gen is the Gen of the Ruleset the memory holds exactly (0: none, or
	// one fitted by an Adjust).
	gen uint64
}

// NewEnforcer returns an Enforcer of scope, writing through driver.
func NewEnforcer(driver Driver, scope Scope) *Enforcer {
	return &Enforcer{driver: driver, scope: scope}
}

// Result says what Enforce did.
type Result struct {
	Stats
	// Full is true when the table was read and the diff made against it.
	Full bool
	// Incremental is true when the Ruleset's Delta was used: its sets'
	// elements were not compared, only the changes it names.
	Incremental bool
}

// Adjust lets a caller fit want to what is in the table before the diff
// (the asg sync drops containers whose parent chain is gone). cur is the
// memory or the State read; it must not be changed.
type Adjust func(cur *State, want *Ruleset) *Ruleset

// Enforce makes the scope hold exactly want (after adjust, when not nil).
// A delta rejected by nft (the table was changed behind the enforcer's
// back) is retried at once as a full resync. The enforcer keeps want's
// rule slices: a Ruleset must not be changed once enforced.
func (e *Enforcer) Enforce(ctx context.Context, want *Ruleset, adjust Adjust) (Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.valid {
		w := want
		if adjust != nil {
			w = adjust(e.mem, want)
		}
		var delta *Delta
		if d := want.Delta; d != nil && adjust == nil && e.gen != 0 && d.From == e.gen {
			delta = d
		}
		tx := e.driver.NewTransaction()
		st, ch := diff(tx, e.mem, w, e.scope, delta)
		res := Result{Stats: st, Incremental: delta != nil}
		if !st.Changed() {
			e.gen = genOf(want, adjust)
			return res, nil
		}
		err := e.driver.Run(withBulk(ctx), tx)
		if err == nil {
			e.mem.update(ch)
			e.gen = genOf(want, adjust)
			return res, nil
		}
		e.valid = false
		var re *RunError
		if !errors.As(err, &re) {
			return Result{}, err
		}
	}
	return e.full(ctx, want, adjust)
}

func (e *Enforcer) full(ctx context.Context, want *Ruleset, adjust Adjust) (Result, error) {
	cur, err := e.driver.Read(ctx)
	if err != nil {
		return Result{Full: true}, err
	}
	w := want
	if adjust != nil {
		w = adjust(cur, want)
	}
	tx := e.driver.NewTransaction()
	skel := DiffSkeleton(tx, cur)
	st := Diff(tx, cur, w, e.scope)
	if skel {
		st.ChainsWritten++ // the skeleton counts as one write
	}
	if err := e.driver.Run(withBulk(ctx), tx); err != nil {
		return Result{Stats: st, Full: true}, err
	}
	e.remember(w, st)
	e.gen = genOf(want, adjust)
	return Result{Stats: st, Full: true}, nil
}

// genOf is the generation the memory holds once want is enforced: want's,
// unless an Adjust made it something else.
func genOf(want *Ruleset, adjust Adjust) uint64 {
	if adjust != nil {
		return 0
	}
	return want.Gen
}

// remember records what the scope holds after a full resync: exactly w,
// less the borrowed chains that were not there to write. (A delta updates
// the memory by its changes instead: O(change).)
func (e *Enforcer) remember(w *Ruleset, st Stats) {
	e.mem = StateOf(w)
	for _, n := range st.MissingBorrowed {
		delete(e.mem.Chains, n)
	}
	e.valid = true
}

// Invalidate forgets what was enforced: the next Enforce reads the table.
func (e *Enforcer) Invalidate() {
	e.mu.Lock()
	e.valid = false
	e.mu.Unlock()
}

// DiffSkeleton adds to tx what the skeleton lacks in cur: the table, its
// maps and chains when absent, and the base chains' rules when they differ.
// Elements of the dispatch maps and the c2c chain's rules are left alone.
// It reports whether it added anything.
func DiffSkeleton(tx *knftables.Transaction, cur *State) bool {
	sk := Skeleton()
	changed := false
	if !cur.Table {
		tx.Add(&knftables.Table{})
		changed = true
	}
	for _, s := range sk.Sets {
		if cur.Sets[s.Name] == nil {
			s.add(tx)
			changed = true
		}
	}
	for _, c := range sk.Chains {
		if cur.Chains[c.Name] == nil {
			c.add(tx)
			changed = true
		}
	}
	for _, c := range sk.Chains {
		if c.Base == nil {
			continue
		}
		cc := cur.Chains[c.Name]
		if cc != nil && slices.Equal(cc.Rules, c.Rules) {
			continue
		}
		// Flushed even when cur has no such chain (it was added above):
		// another writer (the agent's other enforcer, the wrapper) that
		// also found it missing may have added it and its rules since cur
		// was read, and adding without a flush would leave them twice.
		tx.Flush(&knftables.Chain{Name: c.Name})
		for _, r := range c.Rules {
			tx.Add(&knftables.Rule{Chain: c.Name, Rule: r})
		}
		changed = true
	}
	return changed
}
