package asg

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
)

var managedChain = regexp.MustCompile(rules.ASGChainPattern)

// Targets that are not chains (what a rule may jump to without a chain of
// that name existing).
var builtinTargets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "LOG": true, "NFLOG": true,
	"MARK": true, "CONNMARK": true, "QUEUE": true, "NFQUEUE": true, "AUDIT": true, "TRACE": true,
}

// outcome of planning one container against the table.
type outcome int

const (
	outParentAbsent outcome = iota // netout--H does not exist: container gone or not set up yet
	outInSync                      // the kernel already holds the plan
	outChanged                     // the transaction changes the container's chains
	outFailed                      // the plan cannot be applied (see the error)
)

// builder collects the changes to the filter table for one transaction: it
// syncs containers' chains, then removes chains, deciding what is safe to
// delete from what the table will hold once the transaction has run.
type builder struct {
	fam iptables.Family // the tables: iptables or ip6tables
	tx  *iptables.Tx
	cur *iptables.State
	// final is the content, after the transaction, of the chains it syncs.
	final map[string][]iptables.Rule
	// remove are managed chains to delete, in order, with the chains whose
	// jumps to them may be deleted ("" means any netout-- chain).
	remove     []string
	removeFrom map[string]string
	removing   map[string]bool
}

func newBuilder(fam iptables.Family, cur *iptables.State) *builder {
	return &builder{
		fam: fam, tx: iptables.NewTx(iptables.Filter), cur: cur,
		final: map[string][]iptables.Rule{}, removeFrom: map[string]string{}, removing: map[string]bool{},
	}
}

// sync adds the changes that make p's chains right: asg-X holds exactly
// p.Rules, the parent is exactly [-j asg-X, REJECT], and a candidate chain
// an upstream agent left behind is removed. The asg chain is edited or
// redeclared and refilled inside the transaction, so packets see either the
// old rules or the new ones (upstream's candidate chain and rename get the
// same effect with a dozen iptables calls).
func (b *builder) sync(p *ChainPlan) (outcome, error) {
	if !b.cur.Has(p.Parent) {
		return outParentAbsent, nil
	}
	// A missing target chain (netout--H--log, --rl-log) would fail the
	// whole transaction; fail just this container instead.
	for _, r := range p.Rules {
		if t, _ := r.Target(); t != "" && !builtinTargets[t] && !b.cur.Has(t) {
			return outFailed, fmt.Errorf("container %s: chain %s referenced by its asg rules does not exist", p.Container.Handle, t)
		}
	}
	parentWant := []iptables.Rule{rules.Jump(p.Chain), rules.RejectFor(b.fam)}
	out := outInSync
	if !b.cur.Has(p.Chain) || !slices.Equal(b.cur.Rules(p.Chain), p.Rules) ||
		!slices.Equal(b.cur.Rules(p.Parent), parentWant) {
		iptables.SyncChain(b.tx, b.cur, p.Chain, p.Rules)
		iptables.SyncChain(b.tx, b.cur, p.Parent, parentWant)
		b.final[p.Chain] = p.Rules
		b.final[p.Parent] = parentWant
		out = outChanged
	}
	if cand := "c" + p.Chain; b.cur.Has(cand) {
		b.removeChain(cand, p.Parent)
	}
	return out, nil
}

// removeChain schedules a managed chain for removal. Jumps to it are
// deleted from parent, or from any netout-- chain when parent is "". If
// anything else still refers to it, it is left alone.
func (b *builder) removeChain(name, parent string) {
	if !b.cur.Has(name) || b.removing[name] {
		return
	}
	b.removing[name] = true
	b.remove = append(b.remove, name)
	b.removeFrom[name] = parent
}

// finish emits the removals: jumps to the removed chains, then every
// removed chain and every jump target of theirs that nothing refers to
// any more (the container's netout--H--log once netout--H is gone) is
// flushed, then deleted. It returns the chains deleted and those left
// because something else refers to them.
func (b *builder) finish() (deleted, kept []string) {
	if len(b.remove) == 0 {
		return nil, nil
	}
	after := func(c string) []iptables.Rule {
		if r, ok := b.final[c]; ok {
			return r
		}
		return b.cur.Rules(c)
	}
	// Jumps into the set from outside: deletable ones go, others keep the
	// chain.
	type jump struct {
		chain string
		rule  iptables.Rule
	}
	var jumps []jump
	blocked := map[string]bool{}
	for _, c := range b.cur.Chains() {
		if b.removing[c.Name] {
			continue
		}
		for _, r := range after(c.Name) {
			t, _ := r.Target()
			if !b.removing[t] {
				continue
			}
			_, synced := b.final[c.Name]
			from := b.removeFrom[t]
			if !synced && ((from == "" && strings.HasPrefix(c.Name, "netout--")) || from == c.Name) {
				jumps = append(jumps, jump{c.Name, r})
			} else {
				blocked[t] = true
			}
		}
	}
	var gone []string
	for _, c := range b.remove {
		if blocked[c] {
			kept = append(kept, c)
			continue
		}
		gone = append(gone, c)
	}
	if len(gone) == 0 {
		return nil, kept
	}
	goneSet := map[string]bool{}
	for _, c := range gone {
		goneSet[c] = true
	}
	// Jump targets of the removed chains that are user chains and that
	// nothing outside the removed set will refer to. The log chains of a
	// netout chain that still exists stay: the wrapper owns them and the
	// container may get an asg chain again.
	live := map[string]bool{}
	for _, c := range b.cur.Chains() {
		if !strings.HasPrefix(c.Name, "netout--") {
			continue
		}
		log, rl := rules.Postfix(c.Name, "log"), rules.Postfix(c.Name, "rl-log")
		if log == c.Name || rl == c.Name {
			continue // a log chain itself, not a parent
		}
		live[log], live[rl] = true, true
	}
	var targets []string
	targetSet := map[string]bool{}
	for _, c := range gone {
		for _, r := range b.cur.Rules(c) {
			t, _ := r.Target()
			if t == "" || builtinTargets[t] || goneSet[t] || targetSet[t] || live[t] || managedChain.MatchString(t) {
				continue
			}
			if ch := b.cur.Chain(t); ch == nil || ch.Builtin() {
				continue
			}
			if _, synced := b.final[t]; synced {
				continue
			}
			targetSet[t] = true
			targets = append(targets, t)
		}
	}
	if len(targets) > 0 {
		for _, c := range b.cur.Chains() {
			if goneSet[c.Name] {
				continue
			}
			for _, r := range after(c.Name) {
				if t, _ := r.Target(); targetSet[t] {
					delete(targetSet, t)
				}
			}
		}
		// Chains synced in this transaction but new (absent from cur).
		for c, rs := range b.final {
			if b.cur.Has(c) {
				continue
			}
			for _, r := range rs {
				t, _ := r.Target()
				delete(targetSet, t)
			}
		}
	}
	for _, j := range jumps {
		if goneSet[mustTarget(j.rule)] {
			b.tx.Delete(j.chain, j.rule)
		}
	}
	var drop []string
	drop = append(drop, gone...)
	for _, t := range targets {
		if targetSet[t] {
			drop = append(drop, t)
		}
	}
	for _, c := range drop {
		b.tx.Flush(c)
	}
	for _, c := range drop {
		b.tx.DeleteChain(c)
	}
	return drop, kept
}

func mustTarget(r iptables.Rule) string {
	t, _ := r.Target()
	return t
}
