package nft

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// State is netman's table as read from the kernel (or a Fake, or a
// Ruleset that was enforced): chains with their rules, sets and maps with
// their elements, all in canonical text.
type State struct {
	// Table reports whether the table exists.
	Table  bool
	Chains map[string]*ChainState
	Sets   map[string]*SetState
}

// ChainState is one chain of a State.
type ChainState struct {
	Name  string
	Base  bool
	Rules []string
}

// SetState is one set or map of a State.
type SetState struct {
	Name     string
	Type     string // key type, " . "-joined
	Value    string // map value type; "" for a set
	Interval bool
	Dynamic  bool
	Timeout  time.Duration // Dynamic only
	Size     uint64        // Dynamic only
	// Elements maps each key to its value ("" in a set).
	Elements map[string]string
}

// NewState returns an empty State (a table that does not exist).
func NewState() *State {
	return &State{Chains: map[string]*ChainState{}, Sets: map[string]*SetState{}}
}

// StateOf is the State a kernel holding exactly rs would read back.
func StateOf(rs *Ruleset) *State {
	st := NewState()
	st.Apply(rs)
	return st
}

// Apply records rs's objects in st, replacing those of the same names:
// what st looks like once a diff to rs has run.
func (st *State) Apply(rs *Ruleset) {
	if rs == nil {
		return
	}
	st.Table = true
	for _, c := range rs.Chains {
		st.Chains[c.Name] = &ChainState{Name: c.Name, Base: c.Base != nil, Rules: slices.Clone(c.Rules)}
	}
	for _, s := range rs.Sets {
		ss := &SetState{Name: s.Name, Type: s.Type, Value: s.Value, Interval: s.Interval, Dynamic: s.Dynamic,
			Timeout: s.Timeout, Size: s.Size, Elements: make(map[string]string, len(s.Elements))}
		for _, e := range s.Elements {
			ss.Elements[e.Key] = e.Value
		}
		st.Sets[s.Name] = ss
	}
}

// Scoped returns the part of st in scope, sharing its chains and sets.
func (st *State) Scoped(scope Scope) *State {
	out := &State{Table: st.Table, Chains: map[string]*ChainState{}, Sets: map[string]*SetState{}}
	for n, c := range st.Chains {
		if scope.Chain != nil && scope.Chain(n) {
			out.Chains[n] = c
		}
	}
	for n, s := range st.Sets {
		if scope.Set != nil && scope.Set(n) {
			out.Sets[n] = s
		}
	}
	return out
}

// Ruleset converts the state back into a Ruleset, chains and sets sorted by
// name and elements sorted, for printing and comparison in tests.
func (st *State) Ruleset() *Ruleset {
	rs := &Ruleset{}
	for _, n := range slices.Sorted(maps.Keys(st.Sets)) {
		s := st.Sets[n]
		set := &Set{Name: s.Name, Type: s.Type, Value: s.Value, Interval: s.Interval, Dynamic: s.Dynamic,
			Timeout: s.Timeout, Size: s.Size}
		for _, k := range slices.Sorted(maps.Keys(s.Elements)) {
			set.Elements = append(set.Elements, Element{Key: k, Value: s.Elements[k]})
		}
		rs.Sets = append(rs.Sets, set)
	}
	for _, n := range slices.Sorted(maps.Keys(st.Chains)) {
		c := st.Chains[n]
		rs.Chains = append(rs.Chains, &Chain{Name: c.Name, Rules: slices.Clone(c.Rules)})
	}
	return rs
}

// parseRulesText reads chains and their rules from `nft -t list table`
// output into st (base chain headers and set bodies are skipped).
func parseRulesText(st *State, text string) error {
	var cur *ChainState
	for n, line := range strings.Split(text, "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "\tchain ") && strings.HasSuffix(line, " {"):
			name := strings.TrimSuffix(strings.TrimPrefix(line, "\tchain "), " {")
			cur = st.Chains[name]
			if cur == nil {
				cur = &ChainState{Name: name}
				st.Chains[name] = cur
			}
			cur.Rules = cur.Rules[:0]
		case cur != nil && line == "\t}":
			cur = nil
		case cur != nil:
			r := strings.TrimSpace(line)
			if r == "" || strings.HasPrefix(r, "comment ") {
				continue
			}
			if strings.HasPrefix(r, "type ") && strings.Contains(r, " hook ") {
				cur.Base = true
				continue
			}
			if !strings.HasPrefix(line, "\t\t") {
				return fmt.Errorf("nft list line %d: unexpected %q in chain %s", n+1, line, cur.Name)
			}
			cur.Rules = append(cur.Rules, r)
		}
	}
	return nil
}

// parseJSON reads chains (names, base or not) and sets and maps with their
// elements from `nft -j -n list table|set|map` output into st. Elements are
// turned back into the canonical text of format.go using the set's types.
func parseJSON(st *State, data []byte) error {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return fmt.Errorf("nft: parsing json listing: %w", err)
	}
	for _, obj := range doc.Nftables {
		for kind, raw := range obj {
			switch kind {
			case "chain":
				var c struct {
					Table string `json:"table"`
					Name  string `json:"name"`
					Hook  string `json:"hook"`
				}
				if err := json.Unmarshal(raw, &c); err != nil {
					return fmt.Errorf("nft: parsing chain: %w", err)
				}
				if c.Table != TableName {
					continue
				}
				cs := st.Chains[c.Name]
				if cs == nil {
					cs = &ChainState{Name: c.Name}
					st.Chains[c.Name] = cs
				}
				cs.Base = c.Hook != ""
			case "set", "map":
				ss, err := parseSetJSON(raw, kind == "map")
				if err != nil {
					return err
				}
				if ss != nil {
					st.Sets[ss.Name] = ss
				}
			}
		}
	}
	return nil
}

func parseSetJSON(raw json.RawMessage, isMap bool) (*SetState, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var s struct {
		Table   string      `json:"table"`
		Name    string      `json:"name"`
		Type    any         `json:"type"`
		Map     any         `json:"map"`
		Flags   []string    `json:"flags"`
		Timeout json.Number `json:"timeout"`
		Size    json.Number `json:"size"`
		Elem    []any       `json:"elem"`
	}
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("nft: parsing set: %w", err)
	}
	if s.Table != TableName {
		return nil, nil
	}
	keyTypes := typeList(s.Type)
	// nft 1.0.6 leaves "dynamic" out of the JSON flags; netman's only sets
	// with a timeout are the dynamic rate meters.
	ss := &SetState{Name: s.Name, Type: strings.Join(keyTypes, " . "), Elements: make(map[string]string, len(s.Elem)),
		Interval: slices.Contains(s.Flags, "interval"),
		Dynamic:  slices.Contains(s.Flags, "dynamic") || slices.Contains(s.Flags, "timeout")}
	if t, err := s.Timeout.Int64(); err == nil {
		ss.Timeout = time.Duration(t) * time.Second
	}
	if n, err := strconv.ParseUint(s.Size.String(), 10, 64); err == nil {
		ss.Size = n
	}
	var valTypes []string
	if isMap {
		valTypes = typeList(s.Map)
		ss.Value = strings.Join(valTypes, " . ")
	}
	if ss.Dynamic {
		return ss, nil // the packet path's elements, not ours
	}
	for _, e := range s.Elem {
		var k, v any = e, nil
		if isMap {
			pair, ok := e.([]any)
			if !ok || len(pair) != 2 {
				return nil, fmt.Errorf("nft: map %s: element %v is not [key, value]", s.Name, e)
			}
			k, v = pair[0], pair[1]
		}
		key, err := canonical(unwrapElem(k), keyTypes)
		if err != nil {
			return nil, fmt.Errorf("nft: set or map %s: %w", s.Name, err)
		}
		val := ""
		if isMap {
			if val, err = canonical(v, valTypes); err != nil {
				return nil, fmt.Errorf("nft: map %s: %w", s.Name, err)
			}
		}
		ss.Elements[key] = val
	}
	return ss, nil
}

func typeList(t any) []string {
	switch v := t.(type) {
	case string: // a map's concatenated value type comes as one string
		return strings.Split(v, " . ")
	case []any:
		out := make([]string, 0, len(v))
		for _, x := range v {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// unwrapElem strips the {"elem": {"val": ...}} wrapper nft uses for
// elements carrying a comment, timeout or counter.
func unwrapElem(v any) any {
	if m, ok := v.(map[string]any); ok {
		if e, ok := m["elem"].(map[string]any); ok {
			return e["val"]
		}
	}
	return v
}

// canonical renders a JSON key or value of the given field types.
func canonical(v any, types []string) (string, error) {
	if m, ok := v.(map[string]any); ok {
		if c, ok := m["concat"].([]any); ok {
			if len(c) != len(types) {
				return "", fmt.Errorf("concatenation %v does not match type %v", c, types)
			}
			fields := make([]string, len(c))
			for i, f := range c {
				s, err := field(f, types[i])
				if err != nil {
					return "", err
				}
				fields[i] = s
			}
			return Key(fields...), nil
		}
	}
	if len(types) != 1 {
		return "", fmt.Errorf("value %v is not a concatenation of %v", v, types)
	}
	return field(v, types[0])
}

// field renders one field of type t.
func field(v any, t string) (string, error) {
	bad := func() (string, error) { return "", fmt.Errorf("unexpected %s value %v", t, v) }
	switch x := v.(type) {
	case json.Number:
		n, err := strconv.ParseUint(x.String(), 10, 64)
		if err != nil {
			return bad()
		}
		switch t {
		case "mark":
			return Mark(uint32(n)), nil
		case "inet_proto":
			return Proto(uint8(n)), nil
		case "ipv4_addr":
			return a4(uint32(n)).String(), nil
		}
		return strconv.FormatUint(n, 10), nil
	case string:
		switch t {
		case "ifname":
			return Quote(x), nil
		case "ipv4_addr", "ipv6_addr":
			a, err := netip.ParseAddr(x)
			if err != nil {
				return bad()
			}
			return a.String(), nil
		}
		return x, nil
	case map[string]any:
		if p, ok := x["prefix"].(map[string]any); ok {
			addr, _ := p["addr"].(string)
			l, _ := p["len"].(json.Number)
			a, err := netip.ParseAddr(addr)
			bits, err2 := strconv.Atoi(l.String())
			if err != nil || err2 != nil {
				return bad()
			}
			return Prefix(netip.PrefixFrom(a, bits)), nil
		}
		if r, ok := x["range"].([]any); ok && len(r) == 2 {
			if t == "ipv4_addr" || t == "ipv6_addr" {
				lo, ok1 := r[0].(string)
				hi, ok2 := r[1].(string)
				a, err := netip.ParseAddr(lo)
				b, err2 := netip.ParseAddr(hi)
				if !ok1 || !ok2 || err != nil || err2 != nil {
					return bad()
				}
				return AddrRange(a, b), nil
			}
			lo, ok1 := r[0].(json.Number)
			hi, ok2 := r[1].(json.Number)
			a, err := strconv.ParseUint(lo.String(), 10, 32)
			b, err2 := strconv.ParseUint(hi.String(), 10, 32)
			if !ok1 || !ok2 || err != nil || err2 != nil {
				return bad()
			}
			return Range(uint32(a), uint32(b)), nil
		}
		if t == "verdict" && len(x) == 1 {
			for verdict, arg := range x {
				if arg == nil {
					return verdict, nil
				}
				if m, ok := arg.(map[string]any); ok {
					if target, ok := m["target"].(string); ok {
						return verdict + " " + target, nil
					}
				}
			}
		}
	}
	return bad()
}
