package c2c

import (
	"context"
	"errors"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/netman-release/netman/src/iptables"
)

// Upstream's names: the agent's chains are vpa--<microseconds since the
// epoch>, jumped from FORWARD position 1.
const (
	ParentChain = "FORWARD"
	ChainPrefix = "vpa"
)

var chainRe = regexp.MustCompile(`^vpa--([0-9]{10,16})$`)

// ChainName is the chain created at t.
func ChainName(t time.Time) string {
	return ChainPrefix + "--" + strconv.FormatInt(t.UnixMicro(), 10)
}

// Driver is the part of iptables.Driver the enforcer uses.
type Driver interface {
	Update(ctx context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error)
	Apply(ctx context.Context, txs ...*iptables.Tx) error
}

// Enforcer keeps one vpa-- chain equal to the planned rules.
//
// It remembers what it last enforced. While that memory is good, a change
// is applied as a delta against it: rules that went away are deleted by
// their text, new ones inserted at their planned position, all in one
// iptables-restore transaction, without reading the table first. When the
// memory is not good (at start, or after any failed write; a rejected
// delta is retried at once this way) it reads the
// filter table and converges from what is there: it adopts an existing
// vpa-- chain (an agent restart neither opens nor closes anything),
// removes any others, and puts the jump at FORWARD position 1 — again in
// one transaction. Every write goes through Enforce, so it alone knows
// when its memory stops being good; a caller never has to say so.
type Enforcer struct {
	driver Driver
	now    func() time.Time

	mu       sync.Mutex
	chain    string // the live chain, "" until the first sync
	enforced Chains // what the live chains hold; unknown while valid is false
	valid    bool
}

// NewEnforcer returns an enforcer writing through driver.
func NewEnforcer(driver Driver) *Enforcer {
	return &Enforcer{driver: driver, now: time.Now}
}

// Result says what Enforce did.
type Result struct {
	Changed bool   // the kernel was written
	Full    bool   // the table was read and the chain converged from it
	Chain   string // the live chain
	Added   int    // rules inserted (Full: rules written)
	Removed int    // rules deleted
}

// Enforce makes the live chain hold exactly want (and removes any
// per-destination chains). Unchanged input makes no iptables call at all.
func (e *Enforcer) Enforce(ctx context.Context, want []iptables.Rule) (Result, error) {
	return e.EnforceChains(ctx, Chains{Main: want})
}

// EnforceChains makes the live chain hold want.Main and each destination
// chain of want.Dst its rules, and removes destination chains want does
// not name. Unchanged input makes no iptables call at all.
func (e *Enforcer) EnforceChains(ctx context.Context, want Chains) (Result, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.valid {
		if equalChains(e.enforced, want) {
			return Result{Chain: e.chain}, nil
		}
		tx, added, removed := deltaChains(e.chain, e.enforced, want)
		err := e.driver.Apply(ctx, tx)
		if err == nil {
			e.enforced = cloneChains(want)
			return Result{Changed: true, Chain: e.chain, Added: added, Removed: removed}, nil
		}
		// Whatever failed — a rejected payload (someone edited our chain),
		// a lock timeout, or iptables-restore killed by a cancelled
		// context, possibly after its commit — the kernel may no longer be
		// what we remember. The next attempt reads it first; a delta
		// computed from a wrong memory could leave a stale rule behind.
		e.valid = false
		var re *iptables.RestoreError
		if !errors.As(err, &re) {
			return Result{Chain: e.chain}, err
		}
	}
	return e.full(ctx, want)
}

// Invalidate forgets what was enforced: the next Enforce reads the filter
// table and converges from it (the agent's periodic drift check).
func (e *Enforcer) Invalidate() {
	e.mu.Lock()
	e.valid = false
	e.mu.Unlock()
}

// Chain is the live chain name ("" before the first sync).
func (e *Enforcer) Chain() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.chain
}

func (e *Enforcer) full(ctx context.Context, want Chains) (Result, error) {
	var res Result
	_, err := e.driver.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		tx := iptables.NewTx(iptables.Filter)
		res = planFull(tx, cur, want, e.now())
		return tx, nil
	})
	if err != nil {
		return Result{Chain: e.chain}, err
	}
	e.chain, e.enforced, e.valid = res.Chain, cloneChains(want), true
	res.Full = true
	return res, nil
}

// planFull converges the filter table to one vpa-- chain holding
// want.Main, jumped from FORWARD position 1, and the destination chains of
// want.Dst; other vpa-- chains and destination chains are removed. The
// chain kept is the newest one FORWARD jumps to; without one a chain named
// for now is created.
func planFull(tx *iptables.Tx, cur *iptables.State, want Chains, now time.Time) Result {
	var keep string
	var keepTS int64 = -1
	var all []string
	for _, name := range cur.ChainNames(func(n string) bool { return chainRe.MatchString(n) }) {
		all = append(all, name)
		if len(cur.RefsTo(name)) == 0 {
			continue
		}
		ts, _ := strconv.ParseInt(chainRe.FindStringSubmatch(name)[1], 10, 64)
		if ts > keepTS {
			keep, keepTS = name, ts
		}
	}
	res := Result{Changed: true}
	// Destination chains first: the main chain's jumps need them.
	before := len(tx.Lines())
	for _, name := range sortedKeys(want.Dst) {
		iptables.SyncChain(tx, cur, name, want.Dst[name])
	}
	if keep == "" {
		keep = ChainName(now)
		for cur.Has(keep) { // an unreferenced leftover of the same microsecond
			now = now.Add(time.Microsecond)
			keep = ChainName(now)
		}
		tx.DeclareChain(keep)
		tx.Append(keep, want.Main...)
		before++ // the declaration is not a rule
	} else {
		iptables.SyncChain(tx, cur, keep, want.Main)
	}
	res.Added = len(tx.Lines()) - before
	res.Changed = res.Added > 0
	jump := iptables.Rule("-j " + keep)
	if rs := cur.Rules(ParentChain); len(rs) == 0 || rs[0] != jump || countJumps(cur, keep) != 1 {
		iptables.DeleteJumps(tx, cur, keep, ParentChain)
		tx.Insert(ParentChain, 1, jump)
		res.Changed = true
	}
	var stale []string
	for _, name := range all {
		if name != keep {
			iptables.DeleteJumps(tx, cur, name, ParentChain)
			stale = append(stale, name)
		}
	}
	if len(stale) > 0 {
		iptables.RemoveChains(tx, cur, stale...)
		res.Changed = true
	}
	if removeDstChains(tx, cur, keep, stale, want.Dst) {
		res.Changed = true
	}
	res.Chain = keep
	return res
}

// removeDstChains removes the destination chains present in cur that want
// does not name. By now the kept chain holds the planned rules (no jump to
// them) and the stale vpa-- chains are flushed; a jump from any other
// chain (someone else's edit) is deleted too, so the chain can go.
func removeDstChains(tx *iptables.Tx, cur *iptables.State, keep string, flushed []string, want map[string][]iptables.Rule) bool {
	gone := map[string]bool{}
	var names []string
	for _, name := range cur.ChainNames(IsDstChain) {
		if _, ok := want[name]; !ok {
			gone[name] = true
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return false
	}
	skip := map[string]bool{keep: true}
	for _, n := range flushed {
		skip[n] = true
	}
	for _, c := range cur.Chains() {
		if skip[c.Name] || gone[c.Name] {
			continue
		}
		iptables.DeleteMatching(tx, cur, c.Name, func(r iptables.Rule) bool {
			t, _ := r.Target()
			return gone[t]
		})
	}
	for _, n := range names {
		tx.Flush(n)
	}
	for _, n := range names {
		tx.DeleteChain(n)
	}
	return true
}

func countJumps(cur *iptables.State, chain string) int {
	n := 0
	for _, ref := range cur.RefsTo(chain) {
		if ref.Chain == ParentChain {
			n++
		}
	}
	return n
}

// deltaChains turns the enforced chains into want in one transaction: new
// destination chains are created and filled, kept ones edited by delta,
// then the main chain (whose jumps need the new chains and must be gone
// before a chain is deleted), then destination chains no longer planned
// are flushed and deleted.
func deltaChains(main string, old, want Chains) (tx *iptables.Tx, added, removed int) {
	tx = iptables.NewTx(iptables.Filter)
	for _, name := range sortedKeys(want.Dst) {
		rs := want.Dst[name]
		prev, ok := old.Dst[name]
		if !ok {
			tx.DeclareChain(name)
			tx.Append(name, rs...)
			added += len(rs)
			continue
		}
		a, r := delta(tx, name, prev, rs)
		added, removed = added+a, removed+r
	}
	a, r := delta(tx, main, old.Main, want.Main)
	added, removed = added+a, removed+r
	var gone []string
	for _, name := range sortedKeys(old.Dst) {
		if _, ok := want.Dst[name]; !ok {
			gone = append(gone, name)
			tx.Flush(name)
			removed += len(old.Dst[name])
		}
	}
	for _, name := range gone {
		tx.DeleteChain(name)
	}
	return tx, added, removed
}

// delta adds to tx what turns chain from old into want: deletions by rule
// text and insertions at their final positions. Rules in both lists must
// keep their relative order (the planner's sort guarantees it); if they do
// not, the chain is rewritten whole — still inside the one transaction.
func delta(tx *iptables.Tx, chain string, old, want []iptables.Rule) (added, removed int) {
	inWant := make(map[iptables.Rule]struct{}, len(want))
	for _, r := range want {
		inWant[r] = struct{}{}
	}
	inOld := make(map[iptables.Rule]int, len(old))
	for i, r := range old {
		inOld[r] = i
	}
	// Kept rules must appear in the same order in both lists.
	last := -1
	for _, r := range want {
		if i, ok := inOld[r]; ok {
			if i < last {
				tx.DeclareChain(chain)
				tx.Append(chain, want...)
				return len(want), len(old)
			}
			last = i
		}
	}
	for _, r := range old {
		if _, ok := inWant[r]; !ok {
			tx.Delete(chain, r)
			removed++
		}
	}
	for i, r := range want {
		if _, ok := inOld[r]; !ok {
			tx.Insert(chain, i+1, r)
			added++
		}
	}
	return added, removed
}

func equalChains(a, b Chains) bool {
	if !slices.Equal(a.Main, b.Main) || len(a.Dst) != len(b.Dst) {
		return false
	}
	for name, rs := range a.Dst {
		other, ok := b.Dst[name]
		if !ok || !slices.Equal(rs, other) {
			return false
		}
	}
	return true
}

func cloneChains(c Chains) Chains {
	out := Chains{Main: slices.Clone(c.Main)}
	if c.Dst != nil {
		out.Dst = make(map[string][]iptables.Rule, len(c.Dst))
		for name, rs := range c.Dst {
			out.Dst[name] = slices.Clone(rs)
		}
	}
	return out
}

func sortedKeys(m map[string][]iptables.Rule) []string {
	return slices.Sorted(maps.Keys(m))
}
