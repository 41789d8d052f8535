package iptables

import (
	"fmt"
	"strings"
)

// State is one table as `iptables-save -t <table>` printed it.
type State struct {
	Table  string
	chains map[string]*Chain
	order  []string
}

// Chain is one chain of a State, rules in kernel order.
type Chain struct {
	Name string
	// Policy is ACCEPT/DROP for built-in chains and "-" for user chains.
	Policy string
	Rules  []Rule
}

// Builtin reports whether the chain is a built-in one (has a policy).
func (c *Chain) Builtin() bool { return c.Policy != "-" }

// Ref is a rule that jumps or goes to a chain.
type Ref struct {
	Chain string // the chain holding the rule
	Num   int    // 1-based position in that chain
	Rule  Rule
}

// ParseSave parses iptables-save output for table. Other tables in the text
// are ignored; an absent table yields an empty State.
func ParseSave(table, text string) (*State, error) {
	all, err := ParseSaveTables(text, table)
	if err != nil {
		return nil, err
	}
	return all[table], nil
}

// ParseSaveTables parses the named tables out of one iptables-save output in
// a single pass; a table absent from the text yields an empty State. Rules
// share memory with text (no per-line copies: a cell's save output can be
// megabytes).
func ParseSaveTables(text string, tables ...string) (map[string]*State, error) {
	out := make(map[string]*State, len(tables))
	for _, t := range tables {
		out[t] = &State{Table: t, chains: map[string]*Chain{}}
	}
	var s *State // table being read, nil when skipping
	n := 0
	for len(text) > 0 {
		n++
		line := text
		if i := strings.IndexByte(text, '\n'); i >= 0 {
			line, text = text[:i], text[i+1:]
		} else {
			text = ""
		}
		switch {
		case line == "" || line[0] == '#':
		case line[0] == '*':
			s = out[line[1:]]
		case s == nil:
		case line == "COMMIT":
			s = nil
		case line[0] == ':':
			f := strings.Fields(line[1:])
			if len(f) < 2 {
				return nil, fmt.Errorf("iptables-save line %d: bad chain line %q", n, line)
			}
			s.addChain(f[0], f[1])
		case strings.HasPrefix(line, "-A "):
			rest := line[3:]
			chain, rule := rest, ""
			if sp := strings.IndexByte(rest, ' '); sp >= 0 {
				chain, rule = rest[:sp], rest[sp+1:]
			}
			c := s.chains[chain]
			if c == nil {
				// iptables-save declares every chain first; tolerate
				// hand-written input that does not.
				c = s.addChain(chain, "-")
			}
			c.Rules = append(c.Rules, Rule(rule))
		default:
			return nil, fmt.Errorf("iptables-save line %d: unexpected %q", n, line)
		}
	}
	return out, nil
}

func (s *State) addChain(name, policy string) *Chain {
	if c, ok := s.chains[name]; ok {
		return c
	}
	c := &Chain{Name: name, Policy: policy}
	s.chains[name] = c
	s.order = append(s.order, name)
	return c
}

// Chain returns the named chain, or nil when it does not exist.
func (s *State) Chain(name string) *Chain { return s.chains[name] }

// Has reports whether the chain exists.
func (s *State) Has(name string) bool { return s.chains[name] != nil }

// Rules returns the chain's rules (nil when absent).
func (s *State) Rules(name string) []Rule {
	if c := s.chains[name]; c != nil {
		return c.Rules
	}
	return nil
}

// Chains returns every chain in iptables-save order.
func (s *State) Chains() []*Chain {
	out := make([]*Chain, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, s.chains[n])
	}
	return out
}

// ChainNames returns the names of the chains for which match is true, in
// iptables-save order.
func (s *State) ChainNames(match func(string) bool) []string {
	var out []string
	for _, n := range s.order {
		if match == nil || match(n) {
			out = append(out, n)
		}
	}
	return out
}

// RefsTo returns every rule in the table that jumps or goes to target.
func (s *State) RefsTo(target string) []Ref {
	var out []Ref
	for _, n := range s.order {
		for i, r := range s.chains[n].Rules {
			if t, _ := r.Target(); t == target {
				out = append(out, Ref{Chain: n, Num: i + 1, Rule: r})
			}
		}
	}
	return out
}

// Contains reports whether chain holds rule.
func (s *State) Contains(chain string, rule Rule) bool {
	for _, r := range s.Rules(chain) {
		if r == rule {
			return true
		}
	}
	return false
}

// RuleCount is the number of rules in the table.
func (s *State) RuleCount() int {
	n := 0
	for _, c := range s.chains {
		n += len(c.Rules)
	}
	return n
}

// String renders the state in iptables-save form (without counters and
// comments), handy in test failure output.
func (s *State) String() string {
	var b strings.Builder
	b.WriteString("*" + s.Table + "\n")
	for _, n := range s.order {
		b.WriteString(":" + n + " " + s.chains[n].Policy + "\n")
	}
	for _, n := range s.order {
		for _, r := range s.chains[n].Rules {
			b.WriteString("-A " + n + " " + string(r) + "\n")
		}
	}
	b.WriteString("COMMIT\n")
	return b.String()
}
