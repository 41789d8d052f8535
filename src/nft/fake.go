package nft

import (
	"context"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// Fake is a Driver keeping the table in memory: knftables' Fake, which
// applies transactions all-or-nothing and fails on objects that are
// missing or already exist as nft does, plus the reads. It does not parse
// rules or check that interval elements do not overlap; the privileged
// tests run the same plans through the real nft.
type Fake struct {
	*knftables.Fake
}

// NewFake returns a Fake holding no table.
func NewFake() *Fake { return &Fake{Fake: knftables.NewFake(Family, TableName)} }

// Run implements Driver.
func (f *Fake) Run(ctx context.Context, tx *knftables.Transaction) error {
	if tx.NumOperations() == 0 {
		return nil
	}
	if err := f.Fake.Run(ctx, tx); err != nil {
		return &RunError{Ops: tx.NumOperations(), Err: err}
	}
	return nil
}

// Read implements Driver.
func (f *Fake) Read(context.Context) (*State, error) {
	f.RLock()
	defer f.RUnlock()
	st := NewState()
	t := f.Table
	if t == nil {
		return st, nil
	}
	st.Table = true
	for name, c := range t.Chains {
		cs := &ChainState{Name: name, Base: c.Hook != nil}
		for _, r := range c.Rules {
			cs.Rules = append(cs.Rules, r.Rule)
		}
		st.Chains[name] = cs
	}
	for name, s := range t.Sets {
		ss := fakeSet(name, s.Type, "", s.Flags)
		for _, e := range s.Elements {
			ss.Elements[fakeKey(ss, e.Key)] = ""
		}
		st.Sets[name] = ss
	}
	for name, m := range t.Maps {
		key, value, _ := strings.Cut(m.Type, " : ")
		ss := fakeSet(name, key, value, m.Flags)
		for _, e := range m.Elements {
			ss.Elements[fakeKey(ss, e.Key)] = strings.Join(e.Value, " . ")
		}
		st.Sets[name] = ss
	}
	return st, nil
}

// fakeKey is an element's key as the kernel lists it (see wireRange).
func fakeKey(s *SetState, key []string) string {
	if s.Interval && len(key) > 1 {
		key = append(key[:len(key)-1:len(key)-1], canonicalRange(key[len(key)-1]))
	}
	return strings.Join(key, " . ")
}

func fakeSet(name, key, value string, flags []knftables.SetFlag) *SetState {
	ss := &SetState{Name: name, Type: key, Value: value, Elements: map[string]string{}}
	for _, fl := range flags {
		switch fl {
		case knftables.IntervalFlag:
			ss.Interval = true
		case knftables.DynamicFlag:
			ss.Dynamic = true
		}
	}
	return ss
}

// ChainNames implements Driver.
func (f *Fake) ChainNames(context.Context) (map[string]bool, error) {
	f.RLock()
	defer f.RUnlock()
	names := map[string]bool{}
	if f.Table != nil {
		for n := range f.Table.Chains {
			names[n] = true
		}
	}
	return names, nil
}

// ReadSet implements Driver.
func (f *Fake) ReadSet(ctx context.Context, name string, isMap bool) (*SetState, error) {
	st, err := f.Read(ctx)
	if err != nil {
		return nil, err
	}
	s := st.Sets[name]
	if s == nil || (s.Value != "") != isMap {
		return nil, nil
	}
	return s, nil
}

// Ruleset returns the fake's table as a Ruleset (sorted), for golden files
// and assertions on end state.
func (f *Fake) Ruleset() *Ruleset {
	st, _ := f.Read(context.Background())
	return st.Ruleset()
}

// Has implements Driver.
func (f *Fake) Has(_ context.Context, chains, sets []string) bool {
	f.RLock()
	defer f.RUnlock()
	if f.Table == nil {
		return false
	}
	for _, n := range chains {
		if f.Table.Chains[n] == nil {
			return false
		}
	}
	for _, n := range sets {
		if f.Table.Sets[n] == nil && f.Table.Maps[n] == nil {
			return false
		}
	}
	return true
}

// RemoveUnusedSets implements Driver: a set is in use when a rule names it
// ("@name" followed by a space or the rule's end), as the kernel counts.
func (f *Fake) RemoveUnusedSets(ctx context.Context, prefix string) ([]string, error) {
	f.RLock()
	var names []string
	if f.Table != nil {
		for n := range f.Table.Sets {
			if strings.HasPrefix(n, prefix) && !f.referenced(n) {
				names = append(names, n)
			}
		}
	}
	f.RUnlock()
	slices.Sort(names)
	for _, n := range names {
		tx := f.NewTransaction()
		tx.Delete(&knftables.Set{Name: n})
		if err := f.Run(ctx, tx); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func (f *Fake) referenced(set string) bool {
	for _, c := range f.Table.Chains {
		for _, r := range c.Rules {
			for _, field := range strings.Fields(r.Rule) {
				if field == "@"+set {
					return true
				}
			}
		}
	}
	return false
}
