package nft

import (
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"sigs.k8s.io/knftables"
)

// Ruleset is a desired part of netman's table: the chains and sets (and
// maps) one writer manages, with their rules and elements. Rules and
// elements are text in the canonical form `nft list` prints (see format.go
// and the privileged round-trip test), so a Ruleset compares with a State
// read from the kernel string for string.
type Ruleset struct {
	Chains []*Chain
	Sets   []*Set
	// Gen, when not 0, identifies this Ruleset among those a planner has
	// made (NewGeneration), and Delta, when not nil, says how its sets'
	// elements differ from those of an earlier one. An Enforcer whose
	// memory is that earlier Ruleset then writes the delta without
	// comparing the sets' elements: a change costs O(change) in the
	// agent's CPU as well as in the kernel. Any other Enforcer (after a
	// failure, Invalidate, or a Ruleset it never enforced) diffs the
	// elements as they are, so a Delta is only ever a shortcut.
	Gen   uint64
	Delta *Delta
}

// Delta is how the set elements of a Ruleset differ from those of the
// Ruleset of generation From (chains and set definitions are compared
// whole: they are few).
type Delta struct {
	From uint64
	// Sets holds the changes of each set whose elements differ, by name.
	// A set of both Rulesets that is absent here holds the same elements
	// in both. A set new since From, or whose definition changed, is taken
	// whole from the Ruleset.
	Sets map[string]*SetDelta
}

// SetDelta is one set's element changes.
type SetDelta struct {
	// Put holds the elements added, and those whose value changed.
	Put []Element
	// Del holds the keys of the elements gone (none of them in Put).
	Del []string
}

var generations atomic.Uint64

// NewGeneration returns a Gen no other Ruleset of this process has.
func NewGeneration() uint64 { return generations.Add(1) }

// Chain is a chain and its rules, in order.
type Chain struct {
	Name  string
	Rules []string
	// Base makes it a base chain (skeleton only).
	Base *BaseChain
	// Borrowed marks a chain whose rules the writer sets but whose
	// existence it does not own: it is never created or deleted by a diff,
	// only rewritten when it exists (the asg sync writing the wrapper's
	// netout--<handle> chain, as upstream's agent does in iptables).
	Borrowed bool
}

// BaseChain is the hook of a base chain.
type BaseChain struct {
	Type     knftables.BaseChainType
	Hook     knftables.BaseChainHook
	Priority knftables.BaseChainPriority
}

// Set is a set, or a map when Value is set.
type Set struct {
	Name string
	// Type is the key type, concatenations joined by " . "
	// ("mark . ipv4_addr . inet_proto . inet_service").
	Type string
	// Value is a map's value type ("verdict", "mark", ...); "" for a set.
	Value string
	// Interval sets hold ranges and prefixes (elements must not overlap:
	// the planners hand over disjoint ones).
	Interval bool
	// Dynamic sets are filled by the packet path (rate-limit meters); a
	// diff never touches their elements.
	Dynamic bool
	Timeout time.Duration // Dynamic only
	Size    uint64        // Dynamic only
	// Elements in canonical text; a diff compares them by Key.
	Elements []Element
}

// Element is a set element (Value "") or a map element.
type Element struct {
	Key, Value string
}

// Clone returns a copy of the set's definition, with its elements when
// elements is true.
func (s *Set) Clone(elements bool) *Set {
	c := *s
	c.Elements = nil
	if elements {
		c.Elements = slices.Clone(s.Elements)
	}
	return &c
}

// IsMap reports whether s is a map.
func (s *Set) IsMap() bool { return s.Value != "" }

// kind is "map" or "set", as nft's list command names it.
func (s *Set) kind() string {
	if s.IsMap() {
		return "map"
	}
	return "set"
}

func (s *Set) flags() []knftables.SetFlag {
	var f []knftables.SetFlag
	if s.Interval {
		f = append(f, knftables.IntervalFlag)
	}
	if s.Dynamic {
		f = append(f, knftables.DynamicFlag, knftables.TimeoutFlag)
	}
	return f
}

// add adds the set's definition (not its elements) to tx.
func (s *Set) add(tx *knftables.Transaction) {
	if s.IsMap() {
		m := &knftables.Map{Name: s.Name, Type: s.Type + " : " + s.Value, Flags: s.flags()}
		tx.Add(m)
		return
	}
	set := &knftables.Set{Name: s.Name, Type: s.Type, Flags: s.flags()}
	if s.Dynamic {
		set.Timeout = knftables.PtrTo(s.Timeout)
		set.Size = knftables.PtrTo(s.Size)
	}
	tx.Add(set)
}

func (s *Set) object() knftables.Object {
	if s.IsMap() {
		return &knftables.Map{Name: s.Name}
	}
	return &knftables.Set{Name: s.Name}
}

func (s *Set) element(e Element) *knftables.Element {
	key := strings.Split(e.Key, " . ")
	if s.Interval && len(key) > 1 {
		key[len(key)-1] = wireRange(key[len(key)-1])
	}
	el := &knftables.Element{Key: key}
	if s.IsMap() {
		el.Map = s.Name
		if e.Value != "" {
			el.Value = strings.Split(e.Value, " . ")
		}
	} else {
		el.Set = s.Name
	}
	return el
}

// wireRange writes a single value as the range "v-v". nft 1.0.6 fails to
// delete an element of a concatenated interval set whose fields are all
// single values when a mark leads the key ("No such file or directory":
// it sends no end key); with the last field written as a range it works,
// and a range of one is the same element. Lists print it as "v" again.
func wireRange(v string) string {
	if v == "" || strings.ContainsAny(v, "-/\"") {
		return v
	}
	return v + "-" + v
}

// canonicalRange undoes wireRange: "v-v" is listed as "v".
func canonicalRange(v string) string {
	if lo, hi, ok := strings.Cut(v, "-"); ok && lo == hi {
		return lo
	}
	return v
}

// add adds the chain (not its rules) to tx.
func (c *Chain) add(tx *knftables.Transaction) {
	ch := &knftables.Chain{Name: c.Name}
	if c.Base != nil {
		ch.Type = knftables.PtrTo(c.Base.Type)
		ch.Hook = knftables.PtrTo(c.Base.Hook)
		ch.Priority = knftables.PtrTo(c.Base.Priority)
	}
	tx.Add(ch)
}

// Chain returns the named chain, or nil.
func (rs *Ruleset) Chain(name string) *Chain {
	for _, c := range rs.Chains {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// Set returns the named set or map, or nil.
func (rs *Ruleset) Set(name string) *Set {
	for _, s := range rs.Sets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Merge appends other's chains and sets to rs.
func (rs *Ruleset) Merge(other *Ruleset) {
	if other == nil {
		return
	}
	rs.Chains = append(rs.Chains, other.Chains...)
	rs.Sets = append(rs.Sets, other.Sets...)
}

// Counts returns the number of rules and of set and map elements.
func (rs *Ruleset) Counts() (rules, elements int) {
	for _, c := range rs.Chains {
		rules += len(c.Rules)
	}
	for _, s := range rs.Sets {
		elements += len(s.Elements)
	}
	return rules, elements
}

// String renders the ruleset the way `nft list table inet netman` lays a
// table out (sets and maps, then chains, each in the order given; elements
// sorted, one per line), for golden files and test failures. The text is
// valid nft input: `nft -c -f` checks a golden file against the kernel.
func (rs *Ruleset) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "table %s %s {\n", Family, TableName)
	first := true
	sep := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	for _, s := range rs.Sets {
		sep()
		fmt.Fprintf(&b, "\t%s %s {\n", s.kind(), s.Name)
		if s.IsMap() {
			fmt.Fprintf(&b, "\t\ttype %s : %s\n", s.Type, s.Value)
		} else {
			fmt.Fprintf(&b, "\t\ttype %s\n", s.Type)
		}
		if s.Dynamic {
			fmt.Fprintf(&b, "\t\tsize %d\n", s.Size)
		}
		if fl := s.flags(); len(fl) > 0 {
			names := make([]string, len(fl))
			for i, f := range fl {
				names[i] = string(f)
			}
			fmt.Fprintf(&b, "\t\tflags %s\n", strings.Join(names, ","))
		}
		if s.Dynamic {
			fmt.Fprintf(&b, "\t\ttimeout %s\n", nftDuration(s.Timeout))
		}
		if len(s.Elements) > 0 {
			els := make([]string, len(s.Elements))
			for i, e := range s.Elements {
				els[i] = e.Key
				if s.IsMap() {
					els[i] += " : " + e.Value
				}
			}
			slices.Sort(els)
			b.WriteString("\t\telements = { ")
			b.WriteString(strings.Join(els, ",\n\t\t\t     "))
			b.WriteString(" }\n")
		}
		b.WriteString("\t}\n")
	}
	for _, c := range rs.Chains {
		sep()
		fmt.Fprintf(&b, "\tchain %s {\n", c.Name)
		if c.Base != nil {
			fmt.Fprintf(&b, "\t\ttype %s hook %s priority %s; policy accept;\n", c.Base.Type, c.Base.Hook, c.Base.Priority)
		}
		for _, r := range c.Rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

// nftDuration prints a duration as nft does ("10s", "1m30s").
func nftDuration(d time.Duration) string {
	s := int64(d / time.Second)
	var b strings.Builder
	for _, u := range []struct {
		n    int64
		name string
	}{{86400, "d"}, {3600, "h"}, {60, "m"}, {1, "s"}} {
		if s >= u.n {
			fmt.Fprintf(&b, "%d%s", s/u.n, u.name)
			s %= u.n
		}
	}
	if b.Len() == 0 {
		return "0s"
	}
	return b.String()
}
