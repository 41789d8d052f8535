package asg

import (
	"fmt"
	"net/netip"
	"sort"
	"sync"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/policy"
)

// Container is what the agent knows about one container from the metadata
// store.
type Container struct {
	Handle string
	// IP is not used for the rules; it is carried for the caller's logs.
	IP       string
	SpaceID  string // metadata space_id; empty means no asg chain
	Workload string // metadata container_workload: app, task, staging
	// LogConfig is metadata log_config (a JSON string there); nil if absent.
	LogConfig *LogConfig
}

// LogConfig is the container's log_config metadata, as Diego's executor
// writes it.
type LogConfig struct {
	GUID       string            `json:"guid"`
	Index      int               `json:"index"`
	SourceName string            `json:"source_name"`
	Tags       map[string]string `json:"tags"`
}

// Config is the agent configuration the ASG chains depend on.
type Config struct {
	ASGLogging       bool // iptables_asg_logging
	DeniedLogsPerSec int  // iptables_denied_logs_per_sec
	Deny             rules.DenyNetworks
	Conn             rules.OutConn // outbound_connections (the agent has no dry_run)
	// DisableContainerNetworkPolicy puts "-s overlay -d overlay -j ACCEPT"
	// first in every asg- chain, as upstream's enforcer does.
	DisableContainerNetworkPolicy bool
	OverlayNetwork                string // CIDR; required with DisableContainerNetworkPolicy
	// IPv6OverlayNetwork is the cell's IPv6 overlay /96 on a dual-stack
	// cell ("" on an IPv4-only one): the chains then hold IPv6
	// destinations too (nftables), or a second Syncer of Family IPv6
	// writes the ip6tables twins of the asg chains (iptables).
	IPv6OverlayNetwork string
	// Family is the tables an iptables Syncer writes: IPv4 (iptables) or
	// IPv6 (ip6tables: the chains of the same names with the IPv6
	// destinations, icmpv6 rules and IPv6 deny networks).
	Family iptables.Family
}

// ChainPlan is the planned asg chain of one container.
type ChainPlan struct {
	Container Container
	Parent    string // netout--<handle>, the wrapper's egress chain
	Chain     string // asg-<handle digest>
	// Rules is the whole chain top to bottom: upstream's list L reversed,
	// then the defaults (DENY_ log, REJECT).
	Rules []iptables.Rule
	// Err says why the container is skipped (a destination that does not
	// parse, rules JSON that does not decode, a chain name taken by another
	// container). A skipped container's chains are left as they are.
	Err error
	// Warnings are rules dropped from the chain (tcp without ports, ...).
	Warnings []string
}

// Planner computes asg chains. It is pure (a cache of converted groups
// aside) and safe for concurrent use.
type Planner struct {
	cfg     Config
	overlay iptables.Rule // "" unless DisableContainerNetworkPolicy

	mu sync.Mutex
	// converted caches each group's conversion by its rules text, as of
	// the last Plan: groups rarely change between polls.
	converted map[string]*groupRules
}

// NewPlanner checks cfg.
func NewPlanner(cfg Config) (*Planner, error) {
	p := &Planner{cfg: cfg}
	if cfg.DisableContainerNetworkPolicy {
		pfx, err := netip.ParsePrefix(cfg.OverlayNetwork)
		if err != nil || !pfx.Addr().Is4() {
			return nil, fmt.Errorf("asg: invalid overlay network %q", cfg.OverlayNetwork)
		}
		p.overlay = rules.OverlayAcceptAll(pfx)
	}
	if cfg.IPv6OverlayNetwork != "" {
		pfx, err := netip.ParsePrefix(cfg.IPv6OverlayNetwork)
		if err != nil || !pfx.Addr().Is6() {
			return nil, fmt.Errorf("asg: invalid ipv6 overlay network %q", cfg.IPv6OverlayNetwork)
		}
		if cfg.DisableContainerNetworkPolicy && cfg.Family == iptables.IPv6 {
			p.overlay = rules.OverlayAcceptAll(pfx)
		}
	} else if cfg.Family == iptables.IPv6 {
		return nil, fmt.Errorf("asg: an IPv6 syncer needs the ipv6 overlay network")
	}
	return p, nil
}

// SpaceGUIDs returns the sorted, unique space GUIDs of the containers,
// which is what the security groups are fetched for.
func SpaceGUIDs(containers []Container) []string {
	seen := map[string]bool{}
	var out []string
	for _, c := range containers {
		if c.SpaceID != "" && !seen[c.SpaceID] {
			seen[c.SpaceID] = true
			out = append(out, c.SpaceID)
		}
	}
	sort.Strings(out)
	return out
}

type lifecycle int

const (
	none lifecycle = iota
	staging
	running
)

func lifecycleOf(workload string) lifecycle {
	switch workload {
	case "staging":
		return staging
	case "app", "task":
		return running
	}
	return none
}

// groupRules is one security group's rules, converted.
type groupRules struct {
	rules    []rules.NetOutRule
	err      error
	warnings []string
}

func convertGroup(text string) *groupRules {
	g := &groupRules{}
	rs, err := ParseRules(text)
	if err == nil {
		g.rules, err = Convert(rs, func(w string) { g.warnings = append(g.warnings, w) })
	}
	g.err = err
	return g
}

type indexedGroup struct {
	guid string
	*groupRules
}

// index is upstream's aggregation of security groups: default staging and
// running groups, and per space the staging and running groups bound to it
// (a default group is not repeated for its spaces).
type index struct {
	defaults [3][]indexedGroup
	spaces   [3]map[string][]indexedGroup
}

func newIndex(groups []policy.SecurityGroup, convert func(string) *groupRules) *index {
	ix := &index{}
	ix.spaces[staging] = map[string][]indexedGroup{}
	ix.spaces[running] = map[string][]indexedGroup{}
	for _, g := range groups {
		ig := indexedGroup{guid: g.GUID, groupRules: convert(g.Rules)}
		if g.StagingDefault {
			ix.defaults[staging] = append(ix.defaults[staging], ig)
		} else {
			for _, s := range g.StagingSpaceGUIDs {
				ix.spaces[staging][s] = append(ix.spaces[staging][s], ig)
			}
		}
		if g.RunningDefault {
			ix.defaults[running] = append(ix.defaults[running], ig)
		} else {
			for _, s := range g.RunningSpaceGUIDs {
				ix.spaces[running][s] = append(ix.spaces[running][s], ig)
			}
		}
	}
	return ix
}

// egress is the converted rule list shared by every container of one
// space and lifecycle: the default groups' rules, then the space's.
func (ix *index) egress(l lifecycle, space string) groupRules {
	if l == none {
		return groupRules{}
	}
	var e groupRules
	for _, list := range [][]indexedGroup{ix.defaults[l], ix.spaces[l][space]} {
		for _, g := range list {
			if g.err != nil {
				return groupRules{err: fmt.Errorf("security group %s: %w", g.guid, g.err)}
			}
			e.rules = append(e.rules, g.rules...)
			e.warnings = append(e.warnings, g.warnings...)
		}
	}
	return e
}

// convertCached converts groups' rules through the cache and returns the
// cache for the next call (only what this call used).
func (p *Planner) convertCached() (convert func(string) *groupRules, done func()) {
	p.mu.Lock()
	old := p.converted
	p.mu.Unlock()
	next := map[string]*groupRules{}
	convert = func(text string) *groupRules {
		if g, ok := next[text]; ok {
			return g
		}
		g, ok := old[text]
		if !ok {
			g = convertGroup(text)
		}
		next[text] = g
		return g
	}
	return convert, func() {
		p.mu.Lock()
		p.converted = next
		p.mu.Unlock()
	}
}

// Plan computes the asg chain of every container that has a space. The
// rules are upstream's (spec §5.7 step 4): the groups for the container's
// lifecycle and space converted and deduplicated as §4.7, the deny-network,
// rate-limit and state rules, all reversed above the defaults.
func (p *Planner) Plan(containers []Container, groups []policy.SecurityGroup) []ChainPlan {
	convert, done := p.convertCached()
	defer done()
	ix := newIndex(groups, convert)
	type key struct {
		l     lifecycle
		space string
	}
	memo := map[key]groupRules{}
	byChain := map[string]string{}  // asg chain → handle
	byParent := map[string]string{} // netout chain → handle
	var out []ChainPlan
	for _, c := range containers {
		if c.SpaceID == "" || c.Handle == "" {
			continue
		}
		netout := rules.NetOutChain{
			Handle:           c.Handle,
			Workload:         c.Workload,
			Deny:             p.cfg.Deny,
			Conn:             p.cfg.Conn,
			ASGLogging:       p.cfg.ASGLogging,
			DeniedLogsPerSec: p.cfg.DeniedLogsPerSec,
			Family:           p.cfg.Family,
			DualStack:        p.cfg.IPv6OverlayNetwork != "",
		}
		cp := ChainPlan{Container: c, Parent: netout.Name(), Chain: rules.ASGChain(c.Handle)}
		if h, ok := byChain[cp.Chain]; ok {
			cp.Err = fmt.Errorf("asg chain %s is already the chain of container %s", cp.Chain, h)
			out = append(out, cp)
			continue
		}
		if h, ok := byParent[cp.Parent]; ok {
			cp.Err = fmt.Errorf("netout chain %s is already the chain of container %s", cp.Parent, h)
			out = append(out, cp)
			continue
		}
		byChain[cp.Chain], byParent[cp.Parent] = c.Handle, c.Handle

		k := key{lifecycleOf(c.Workload), c.SpaceID}
		e, ok := memo[k]
		if !ok {
			e = ix.egress(k.l, k.space)
			memo[k] = e
		}
		if e.err != nil {
			cp.Err = e.err
			out = append(out, cp)
			continue
		}
		cp.Warnings = append(cp.Warnings, e.warnings...)
		body := netout.Rules(e.rules, func(w string) { cp.Warnings = append(cp.Warnings, w) })
		if p.overlay != "" {
			cp.Rules = make([]iptables.Rule, 0, len(body)+1)
			cp.Rules = append(append(cp.Rules, p.overlay), body...)
		} else {
			cp.Rules = body
		}
		out = append(out, cp)
	}
	return out
}
