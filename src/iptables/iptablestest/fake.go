// Package iptablestest is an in-memory stand-in for the iptables driver, for
// unit tests without root: it keeps tables as States and applies Tx lines
// with iptables-restore's semantics (all or nothing per transaction; a rule
// may only jump to an existing chain; -D needs an exact match; a chain must
// be empty and unreferenced to be deleted). Assert on the end state
// (Save/Dump), not on calls.
package iptablestest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/netman-release/netman/src/iptables"
)

var builtins = map[string][]string{
	iptables.Filter: {"INPUT", "FORWARD", "OUTPUT"},
	iptables.NAT:    {"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"},
	iptables.Mangle: {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"},
	iptables.Raw:    {"PREROUTING", "OUTPUT"},
}

// Tables is a set of in-memory tables. Safe for concurrent use.
type Tables struct {
	mu     sync.Mutex
	tables map[string]*table
	// Applied counts successful restore calls (one per Apply or Update write).
	Applied int
	// FailNext, when set, makes the next write fail with this error
	// without changing anything.
	FailNext error
}

type table struct {
	chains map[string]*chain
	order  []string
}

type chain struct {
	policy string
	rules  []string
}

// New returns empty tables (built-in chains only).
func New() *Tables { return &Tables{tables: map[string]*table{}} }

func (t *Tables) get(name string) *table {
	tb := t.tables[name]
	if tb == nil {
		tb = &table{chains: map[string]*chain{}}
		for _, c := range builtins[name] {
			tb.chains[c] = &chain{policy: "ACCEPT"}
			tb.order = append(tb.order, c)
		}
		t.tables[name] = tb
	}
	return tb
}

func (tb *table) clone() *table {
	c := &table{chains: map[string]*chain{}, order: append([]string(nil), tb.order...)}
	for n, ch := range tb.chains {
		c.chains[n] = &chain{policy: ch.policy, rules: append([]string(nil), ch.rules...)}
	}
	return c
}

// Apply applies each transaction atomically, in order; it stops at the
// first failing one (earlier ones stay applied, as with one restore call).
func (t *Tables) Apply(_ context.Context, txs ...*iptables.Tx) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.applyLocked(txs...)
}

func (t *Tables) applyLocked(txs ...*iptables.Tx) error {
	if t.FailNext != nil {
		err := t.FailNext
		t.FailNext = nil
		return err
	}
	wrote := false
	for _, tx := range txs {
		if tx == nil || tx.Empty() {
			continue
		}
		next := t.get(tx.Table()).clone()
		for i, l := range tx.Lines() {
			if err := next.apply(l); err != nil {
				// A rejected payload, as the real driver reports it.
				return &iptables.RestoreError{Binary: "fake iptables-restore", Err: fmt.Errorf("%s: %w", tx.Table(), err), Line: i + 2, Text: l}
			}
		}
		t.tables[tx.Table()] = next
		wrote = true
	}
	if wrote {
		t.Applied++
	}
	return nil
}

// Save returns a table as a State.
func (t *Tables) Save(_ context.Context, name string) (*iptables.State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return iptables.ParseSave(name, t.dumpLocked(name))
}

// Update is Driver.Update: plan against the current table, then apply.
func (t *Tables) Update(_ context.Context, name string, plan iptables.PlanFunc) (*iptables.State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, err := iptables.ParseSave(name, t.dumpLocked(name))
	if err != nil {
		return nil, err
	}
	tx, err := plan(cur)
	if err != nil {
		return cur, err
	}
	if tx == nil || tx.Empty() {
		return cur, nil
	}
	return cur, t.applyLocked(tx)
}

// UpdateTables is Driver.UpdateTables.
func (t *Tables) UpdateTables(_ context.Context, names []string, plan iptables.MultiPlanFunc) (map[string]*iptables.State, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur := map[string]*iptables.State{}
	for _, n := range names {
		st, err := iptables.ParseSave(n, t.dumpLocked(n))
		if err != nil {
			return nil, err
		}
		cur[n] = st
	}
	txs, err := plan(cur)
	if err != nil {
		return cur, err
	}
	return cur, t.applyLocked(txs...)
}

// Dump prints a table in iptables-save form (no counters or comments).
func (t *Tables) Dump(name string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dumpLocked(name)
}

func (t *Tables) dumpLocked(name string) string {
	tb := t.get(name)
	var b strings.Builder
	b.WriteString("*" + name + "\n")
	for _, n := range tb.order {
		b.WriteString(":" + n + " " + tb.chains[n].policy + " [0:0]\n")
	}
	for _, n := range tb.order {
		for _, r := range tb.chains[n].rules {
			b.WriteString("-A " + n + " " + r + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}

// Chains lists the user chains of a table, sorted.
func (t *Tables) Chains(name string) []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []string
	for n, c := range t.get(name).chains {
		if c.policy == "-" {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

var targets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "REJECT": true, "LOG": true, "MARK": true,
	"DNAT": true, "SNAT": true, "MASQUERADE": true, "CONNMARK": true, "NOTRACK": true, "CT": true,
}

func (tb *table) apply(line string) error {
	if strings.HasPrefix(line, ":") {
		f := strings.Fields(line[1:])
		if len(f) < 2 {
			return fmt.Errorf("bad chain line")
		}
		if c := tb.chains[f[0]]; c != nil {
			if f[1] != "-" {
				c.policy = f[1]
			}
			c.rules = nil
			return nil
		}
		if len(f[0]) > 28 {
			return fmt.Errorf("chain name %q too long", f[0])
		}
		tb.chains[f[0]] = &chain{policy: "-"}
		tb.order = append(tb.order, f[0])
		return nil
	}
	f := strings.SplitN(line, " ", 3)
	if len(f) < 2 {
		return fmt.Errorf("bad line")
	}
	op, name := f[0], f[1]
	rest := ""
	if len(f) == 3 {
		rest = f[2]
	}
	c := tb.chains[name]
	if c == nil {
		return fmt.Errorf("chain %s does not exist", name)
	}
	switch op {
	case "-A":
		if err := tb.checkTarget(rest); err != nil {
			return err
		}
		c.rules = append(c.rules, rest)
	case "-I", "-R":
		num, rule, err := splitNum(rest)
		if err != nil {
			return err
		}
		if err := tb.checkTarget(rule); err != nil {
			return err
		}
		if op == "-I" {
			if num < 1 || num > len(c.rules)+1 {
				return fmt.Errorf("index of insertion too big")
			}
			c.rules = append(c.rules[:num-1], append([]string{rule}, c.rules[num-1:]...)...)
		} else {
			if num < 1 || num > len(c.rules) {
				return fmt.Errorf("index of replacement too big")
			}
			c.rules[num-1] = rule
		}
	case "-D":
		if n, err := strconv.Atoi(rest); err == nil {
			if n < 1 || n > len(c.rules) {
				return fmt.Errorf("index of deletion too big")
			}
			c.rules = append(c.rules[:n-1], c.rules[n:]...)
			return nil
		}
		for i, r := range c.rules {
			if r == rest {
				c.rules = append(c.rules[:i], c.rules[i+1:]...)
				return nil
			}
		}
		return fmt.Errorf("bad rule (does a matching rule exist in that chain?)")
	case "-F":
		c.rules = nil
	case "-X":
		if c.policy != "-" {
			return fmt.Errorf("cannot delete built-in chain %s", name)
		}
		if len(c.rules) > 0 {
			return fmt.Errorf("directory not empty: chain %s", name)
		}
		for _, other := range tb.order {
			for _, r := range tb.chains[other].rules {
				if t, _ := iptables.Rule(r).Target(); t == name {
					return fmt.Errorf("device or resource busy: chain %s referenced from %s", name, other)
				}
			}
		}
		delete(tb.chains, name)
		for i, n := range tb.order {
			if n == name {
				tb.order = append(tb.order[:i], tb.order[i+1:]...)
				break
			}
		}
	default:
		return fmt.Errorf("unknown command %s", op)
	}
	return nil
}

func (tb *table) checkTarget(rule string) error {
	t, _ := iptables.Rule(rule).Target()
	if t == "" || targets[t] {
		return nil
	}
	if tb.chains[t] == nil {
		return fmt.Errorf("chain '%s' does not exist", t)
	}
	return nil
}

func splitNum(s string) (int, string, error) {
	sp := strings.IndexByte(s, ' ')
	if sp < 0 {
		return 0, "", fmt.Errorf("missing rule")
	}
	n, err := strconv.Atoi(s[:sp])
	if err != nil {
		return 0, "", fmt.Errorf("bad rule number %q", s[:sp])
	}
	return n, s[sp+1:], nil
}
