// Package iptables is the table driver every netman iptables writer uses
// (cni-wrapper-plugin, vxlan-policy-agent, bootstrap and shutdown tools).
//
// It owns the mechanics, not the rules: callers describe the changes to one
// table as a Tx (declare chains, append/insert/delete rules, flush and delete
// chains), and the Driver applies each Tx as one `iptables-restore --noflush
// -w` transaction (ip6tables-restore for a Driver of Family IPv6) under
// upstream's flock lock file. When a change depends on
// what is already there (deleting only what exists, syncing a chain to a
// desired list), the Driver reads the table with `iptables-save -t <table>`
// into a State and hands it to a pure planning function, holding the lock
// from the read to the write.
//
// Rules are plain text in iptables-save's canonical form (what `iptables-save`
// prints after "-A <chain> "), so rendered rules compare byte for byte with
// what the kernel reports. Rendering, parsing and planning are pure and unit
// tested; only driver.go runs binaries.
package iptables

import (
	"fmt"
	"strconv"
	"strings"
)

// Tables netman writes.
const (
	Filter = "filter"
	NAT    = "nat"
	Mangle = "mangle"
	Raw    = "raw"
)

// Rule is one rule specification in iptables-save's canonical form, without
// the leading "-A <chain> ", e.g. `-s 10.255.0.2/32 -j input--abc`. Text that
// is not canonical still works when applied, but will not compare equal to
// the State read back.
type Rule string

// Target returns the chain or target the rule jumps (-j) or goes (-g) to, and
// whether it is a goto; "" when the rule has no target. It does not allocate:
// planners call it for every rule of big tables.
func (r Rule) Target() (target string, isGoto bool) {
	s := string(r)
	for i := 0; i < len(s); {
		// Find the next field.
		for i < len(s) && s[i] == ' ' {
			i++
		}
		j := i
		for j < len(s) && s[j] != ' ' {
			j++
		}
		f := s[i:j]
		if f == "-j" || f == "--jump" || f == "-g" || f == "--goto" {
			k := j
			for k < len(s) && s[k] == ' ' {
				k++
			}
			e := k
			for e < len(s) && s[e] != ' ' {
				e++
			}
			if k == e {
				return "", false
			}
			return s[k:e], f == "-g" || f == "--goto"
		}
		i = j
	}
	return "", false
}

// Tx is an ordered set of changes to one table, applied as one
// iptables-restore transaction: either all of it takes effect or none.
type Tx struct {
	table string
	lines []string
}

// NewTx starts an empty transaction on table.
func NewTx(table string) *Tx { return &Tx{table: table} }

// Table is the table the transaction changes.
func (t *Tx) Table() string { return t.table }

// Empty reports whether the transaction has no changes.
func (t *Tx) Empty() bool { return len(t.lines) == 0 }

// Lines returns the change lines (without the table header and COMMIT).
func (t *Tx) Lines() []string { return append([]string(nil), t.lines...) }

// DeclareChain creates a user chain, or empties it if it already exists (a
// declaration resets the chain even under --noflush, on both backends).
// Never declare built-in chains: that would reset their policy.
func (t *Tx) DeclareChain(chain string) *Tx {
	t.lines = append(t.lines, ":"+chain+" - [0:0]")
	return t
}

// Append adds rules at the end of chain, in order.
func (t *Tx) Append(chain string, rules ...Rule) *Tx {
	for _, r := range rules {
		t.lines = append(t.lines, "-A "+chain+" "+string(r))
	}
	return t
}

// Insert inserts each rule at position pos (1-based), one after another, the
// way upstream's BulkInsert does: the rules end up in reverse order.
func (t *Tx) Insert(chain string, pos int, rules ...Rule) *Tx {
	p := strconv.Itoa(pos)
	for _, r := range rules {
		t.lines = append(t.lines, "-I "+chain+" "+p+" "+string(r))
	}
	return t
}

// InsertInOrder inserts rules starting at position pos so that they keep
// their order: rules[0] ends up at pos, rules[1] at pos+1, ...
func (t *Tx) InsertInOrder(chain string, pos int, rules ...Rule) *Tx {
	for i, r := range rules {
		t.lines = append(t.lines, "-I "+chain+" "+strconv.Itoa(pos+i)+" "+string(r))
	}
	return t
}

// Delete removes the first rule in chain matching rule. The transaction
// fails if there is none, so plan deletions from a State.
func (t *Tx) Delete(chain string, rule Rule) *Tx {
	t.lines = append(t.lines, "-D "+chain+" "+string(rule))
	return t
}

// DeleteNum removes rule number num (1-based) from chain. Only safe in
// chains no other writer touches between the read and the write.
func (t *Tx) DeleteNum(chain string, num int) *Tx {
	t.lines = append(t.lines, "-D "+chain+" "+strconv.Itoa(num))
	return t
}

// Replace replaces rule number num (1-based) of chain.
func (t *Tx) Replace(chain string, num int, rule Rule) *Tx {
	t.lines = append(t.lines, "-R "+chain+" "+strconv.Itoa(num)+" "+string(rule))
	return t
}

// Flush removes every rule from chain.
func (t *Tx) Flush(chain string) *Tx {
	t.lines = append(t.lines, "-F "+chain)
	return t
}

// DeleteChain deletes an empty, unreferenced user chain.
func (t *Tx) DeleteChain(chain string) *Tx {
	t.lines = append(t.lines, "-X "+chain)
	return t
}

// String renders the iptables-restore payload for this table.
func (t *Tx) String() string {
	var b strings.Builder
	t.render(&b)
	return b.String()
}

func (t *Tx) render(b *strings.Builder) {
	b.WriteString("*")
	b.WriteString(t.table)
	b.WriteByte('\n')
	for _, l := range t.lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
}

// Render joins transactions into one iptables-restore payload. Each table
// still commits on its own: a failure in a later table leaves earlier ones
// applied. Empty transactions are left out.
func Render(txs ...*Tx) string {
	var b strings.Builder
	for _, t := range txs {
		if t == nil || t.Empty() {
			continue
		}
		t.render(&b)
	}
	return b.String()
}

// validTable rejects names iptables-restore would misread as syntax.
func validTable(table string) error {
	switch table {
	case Filter, NAT, Mangle, Raw, "security":
		return nil
	}
	return fmt.Errorf("iptables: unknown table %q", table)
}
