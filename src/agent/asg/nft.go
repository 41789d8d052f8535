package asg

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/policy"
)

// The asg part of netman's nftables table (enforcement_backend: nftables).
// As in iptables, the agent owns one chain per container, asg--<handle>
// (with its sets, its --log and --rl-log chains and its rate meter, all
// named after it), and points the wrapper's netout--<handle> at it:
// netout--<handle> becomes [jump asg--<handle>, reject].

// NFTScope is everything the asg sync owns in netman's table.
var NFTScope = nft.PrefixScope(nil, nft.ASGPrefix)

// NFTChainPlan is the planned asg part of one container.
type NFTChainPlan struct {
	Container Container
	Parent    string // netout--<handle>, the wrapper's egress chain
	Chain     string // asg--<handle>
	// Ruleset is the container's chains and sets.
	Ruleset *nft.Ruleset
	// Err says why the container is skipped (as ChainPlan.Err); its
	// objects are then left as they are.
	Err      error
	Warnings []string
}

// PlanNFT is Plan for the nftables backend: per container the same
// security groups, deny networks, rate limit and logging, with the accepted
// destinations in sets (nft.Egress says where that differs from
// first-match order). acceptedUDPLogsPerSec limits the UDP lines of the
// container's OK_ log chain (iptables_accepted_udp_logs_per_sec: in
// iptables mode the agent's rules jump to the wrapper's log chain, which
// has that limit). Containers of one space and lifecycle share the
// conversion of their rules into disjoint set elements.
func (p *Planner) PlanNFT(containers []Container, groups []policy.SecurityGroup, acceptedUDPLogsPerSec int) []NFTChainPlan {
	convert, done := p.convertCached()
	defer done()
	ix := newIndex(groups, convert)
	type key struct {
		l     lifecycle
		space string
	}
	type memo struct {
		e   groupRules
		dst *nft.Destinations
	}
	memos := map[key]*memo{}
	var overlay, overlay6 netip.Prefix
	if p.cfg.DisableContainerNetworkPolicy {
		overlay, _ = netip.ParsePrefix(p.cfg.OverlayNetwork) // checked by NewPlanner
		if p.cfg.IPv6OverlayNetwork != "" {
			overlay6, _ = netip.ParsePrefix(p.cfg.IPv6OverlayNetwork)
		}
	}
	dual := p.cfg.IPv6OverlayNetwork != ""
	var out []NFTChainPlan
	seen := map[string]bool{}
	for _, c := range containers {
		if c.SpaceID == "" || c.Handle == "" {
			continue
		}
		cp := NFTChainPlan{Container: c, Parent: nft.NetOutChain(c.Handle), Chain: nft.ASGChain(c.Handle)}
		if err := nft.ValidName(cp.Chain + "--ports-log"); err != nil {
			cp.Err = fmt.Errorf("container handle %q: %w", c.Handle, err)
			out = append(out, cp)
			continue
		}
		if seen[c.Handle] {
			cp.Err = fmt.Errorf("asg chain %s is already the chain of another container", cp.Chain)
			out = append(out, cp)
			continue
		}
		seen[c.Handle] = true
		k := key{lifecycleOf(c.Workload), c.SpaceID}
		m := memos[k]
		if m == nil {
			m = &memo{e: ix.egress(k.l, k.space)}
			if m.e.err == nil {
				m.dst = nft.ConvertDual(m.e.rules, p.cfg.ASGLogging, dual)
			}
			memos[k] = m
		}
		if m.e.err != nil {
			cp.Err = m.e.err
			out = append(out, cp)
			continue
		}
		cp.Warnings = append(append(cp.Warnings, m.e.warnings...), m.dst.Warnings...)
		eg := nft.Egress{
			Chain: cp.Chain, Handle: c.Handle, Workload: c.Workload, Sets: spaceSets(k.l, k.space),
			Deny: p.cfg.Deny, Conn: p.cfg.Conn,
			ASGLogging: p.cfg.ASGLogging, DeniedLogsPerSec: p.cfg.DeniedLogsPerSec,
			AcceptedUDPLogsPerSec: acceptedUDPLogsPerSec,
			OverlayAcceptAll:      overlay,
			IPv6:                  dual,
			OverlayAcceptAll6:     overlay6,
		}
		cp.Ruleset = eg.Ruleset(m.dst)
		out = append(out, cp)
	}
	return out
}

// spaceSets names the destination sets of a space and lifecycle, which
// all its containers look up: asg--space-<lifecycle>-<space guid>, or with
// a hash of the guid when it is not usable in a name.
func spaceSets(l lifecycle, space string) string {
	lc := map[lifecycle]string{running: "running", staging: "staging"}[l]
	if lc == "" {
		lc = "other"
	}
	name := nft.ASGPrefix + "space-" + lc + "-" + space
	if nft.ValidName(name+"--ports-log") != nil {
		sum := sha256.Sum256([]byte(space))
		name = nft.ASGPrefix + "space-" + lc + "-" + hex.EncodeToString(sum[:8])
	}
	return name
}

// NFTEnforcer keeps the asg part of the table equal to the plans, one
// transaction per sync, writing only what changed: a security group change
// adds and deletes set elements of the containers it concerns, a new
// container gets its chain and sets, a container gone loses them.
type NFTEnforcer struct {
	driver nft.Driver
	enf    *nft.Enforcer
}

// NewNFTEnforcer returns the asg enforcer writing through d.
func NewNFTEnforcer(d nft.Driver) *NFTEnforcer {
	return &NFTEnforcer{driver: d, enf: nft.NewEnforcer(d, NFTScope)}
}

// NFTResult says what one sync did.
type NFTResult struct {
	nft.Result
	// ParentAbsent are containers skipped because netout--<handle> does
	// not exist (gone, or not set up yet), as in iptables mode.
	ParentAbsent []string
}

// Enforce applies the plans. Plans with an Err keep whatever the table
// holds for their container; containers without a plan lose their asg
// objects and their netout--<handle> is left as [reject].
func (e *NFTEnforcer) Enforce(ctx context.Context, plans []NFTChainPlan) (NFTResult, error) {
	names, err := e.driver.ChainNames(ctx)
	if err != nil {
		return NFTResult{}, err
	}
	var res NFTResult
	want := &nft.Ruleset{}
	var keep []string // asg chains of containers whose plan failed
	for _, p := range plans {
		if p.Err != nil {
			keep = append(keep, p.Chain)
			continue
		}
		if !names[p.Parent] {
			res.ParentAbsent = append(res.ParentAbsent, p.Container.Handle)
			continue
		}
		merge(want, p.Ruleset)
		want.Chains = append(want.Chains, &nft.Chain{Name: p.Parent, Borrowed: true,
			Rules: []string{"jump " + p.Chain, nft.Reject}})
	}
	adjust := func(cur *nft.State, want *nft.Ruleset) *nft.Ruleset {
		w := &nft.Ruleset{Chains: slices.Clone(want.Chains), Sets: slices.Clone(want.Sets)}
		planned := map[string]bool{}
		for _, c := range w.Chains {
			planned[c.Name] = true
			// A parent the wrapper made after the enforcer last read the
			// table (a new container) is in the kernel (names) but not in
			// what the enforcer remembers, which would skip it as a
			// borrowed chain that is not there. Its rules are the
			// wrapper's: recorded as unknown, the diff flushes the chain
			// and writes it.
			if c.Borrowed && names[c.Name] && cur.Chains[c.Name] == nil {
				cur.Chains[c.Name] = &nft.ChainState{Name: c.Name, Rules: []string{wrapperRules}}
			}
		}
		for _, n := range slices.Sorted(maps.Keys(cur.Chains)) {
			handle, ok := asgHandle(n)
			if !ok || planned[n] {
				continue
			}
			if slices.Contains(keep, nft.ASGChain(handle)) {
				// Left as it is: its chains, sets and parent.
				merge(w, objectsOf(cur, nft.ASGChain(handle)))
				continue
			}
			// Gone: its parent (if it is still there and points at it)
			// goes back to the wrapper's reject.
			parent := nft.NetOutChain(handle)
			if pc := cur.Chains[parent]; names[parent] && pc != nil && slices.Contains(pc.Rules, "jump "+n) {
				w.Chains = append(w.Chains, &nft.Chain{Name: parent, Borrowed: true, Rules: []string{nft.Reject}})
			}
		}
		return w
	}
	r, err := e.enf.Enforce(ctx, want, adjust)
	res.Result = r
	return res, err
}

// wrapperRules stands for the unread rules of a netout--<handle> chain
// the wrapper wrote (never a rule the planners write).
const wrapperRules = "# rules of cni-wrapper-plugin, not read"

// Invalidate makes the next Enforce read the table.
func (e *NFTEnforcer) Invalidate() { e.enf.Invalidate() }

// merge appends other's chains and sets to rs, each set once: the
// containers of a space share theirs.
func merge(rs, other *nft.Ruleset) {
	rs.Chains = append(rs.Chains, other.Chains...)
	for _, s := range other.Sets {
		if rs.Set(s.Name) == nil {
			rs.Sets = append(rs.Sets, s)
		}
	}
}

// asgHandle returns the handle of an asg--<handle> chain (not of its
// --log and --rl-log companions).
func asgHandle(chain string) (string, bool) {
	h, ok := strings.CutPrefix(chain, nft.ASGPrefix)
	if !ok || strings.HasSuffix(h, "--log") || strings.HasSuffix(h, "--rl-log") {
		return "", false
	}
	return h, true
}

// objectsOf copies from cur every chain and set named after chain (the
// chain itself and its companions), and its parent's rules.
func objectsOf(cur *nft.State, chain string) *nft.Ruleset {
	rs := &nft.Ruleset{}
	for _, n := range slices.Sorted(maps.Keys(cur.Chains)) {
		if n == chain || strings.HasPrefix(n, chain+"--") {
			rs.Chains = append(rs.Chains, &nft.Chain{Name: n, Rules: cur.Chains[n].Rules})
		}
	}
	handle, _ := asgHandle(chain)
	if pc := cur.Chains[nft.NetOutChain(handle)]; pc != nil {
		rs.Chains = append(rs.Chains, &nft.Chain{Name: pc.Name, Rules: pc.Rules, Borrowed: true})
	}
	looked := map[string]bool{} // sets its rules look up (its space's)
	for _, c := range rs.Chains {
		for _, r := range c.Rules {
			for _, f := range strings.Fields(r) {
				if n, ok := strings.CutPrefix(f, "@"); ok {
					looked[n] = true
				}
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(cur.Sets)) {
		if strings.HasPrefix(n, chain+"--") || looked[n] {
			s := cur.Sets[n]
			set := &nft.Set{Name: n, Type: s.Type, Value: s.Value, Interval: s.Interval, Dynamic: s.Dynamic}
			for _, k := range slices.Sorted(maps.Keys(s.Elements)) {
				set.Elements = append(set.Elements, nft.Element{Key: k, Value: s.Elements[k]})
			}
			rs.Sets = append(rs.Sets, set)
		}
	}
	return rs
}
