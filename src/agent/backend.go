package agent

import (
	"context"
	"fmt"
	"regexp"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/nft"
)

// c2cBackend is the c2c part of one enforcement_backend: the planner and
// the enforcer the policy cycle drives.
type c2cBackend interface {
	// plan turns the cycle's inputs into the backend's desired state.
	plan(in c2c.Inputs, warn c2c.Warn) (c2cPlan, error)
	// enforce makes the kernel hold p.
	enforce(ctx context.Context, p c2cPlan) (c2cResult, error)
	// invalidate makes the next enforce read the kernel and converge from
	// it (the periodic drift check).
	invalidate()
	// Chain is the live chain ("" before the first sync).
	Chain() string
}

// c2cPlan is one backend's desired state; size is its rules (iptables) or
// rules and set elements (nftables), for the cycle's log lines.
type c2cPlan struct {
	chains  c2c.Chains
	chains6 c2c.Chains // ip6tables, on a dual-stack cell
	ruleset *nft.Ruleset
	size    int
}

// c2cResult says what enforce did.
type c2cResult struct {
	Changed, Full  bool
	Chain          string
	Added, Removed int
}

// iptablesC2C is upstream's vpa-- chain (c2c.PlanChains, c2c.Enforcer),
// with iptables_per_destination_chains its vpa-dst-<ip> chains. On a
// dual-stack cell enforcer6 keeps the IPv6 twin (c2c.PlanChains6) in
// ip6tables: chains of the same names, enforced the same way.
type iptablesC2C struct {
	enforcer  *c2c.Enforcer
	enforcer6 *c2c.Enforcer // nil: IPv4 only
	perDst    bool
}

func (b iptablesC2C) plan(in c2c.Inputs, warn c2c.Warn) (c2cPlan, error) {
	want, err := c2c.PlanChains(in, warn, b.perDst)
	if err != nil || b.enforcer6 == nil {
		return c2cPlan{chains: want, size: want.Size()}, err
	}
	want6, err := c2c.PlanChains6(in, b.perDst)
	return c2cPlan{chains: want, chains6: want6, size: want.Size() + want6.Size()}, err
}

func (b iptablesC2C) enforce(ctx context.Context, p c2cPlan) (c2cResult, error) {
	r, err := b.enforcer.EnforceChains(ctx, p.chains)
	res := c2cResult{Changed: r.Changed, Full: r.Full, Chain: r.Chain, Added: r.Added, Removed: r.Removed}
	if err != nil || b.enforcer6 == nil {
		return res, err
	}
	r6, err := b.enforcer6.EnforceChains(ctx, p.chains6)
	if err != nil {
		return res, fmt.Errorf("ip6tables: %w", err)
	}
	res.Changed = res.Changed || r6.Changed
	res.Full = res.Full && r6.Full
	res.Added += r6.Added
	res.Removed += r6.Removed
	return res, nil
}

func (b iptablesC2C) invalidate() {
	b.enforcer.Invalidate()
	if b.enforcer6 != nil {
		b.enforcer6.Invalidate()
	}
}
func (b iptablesC2C) Chain() string { return b.enforcer.Chain() }

// nftC2C is the c2c part of netman's inet netman table (c2c.NFTPlanner,
// c2c.NewNFTEnforcer). The planner keeps its previous plan, so that a
// cycle hands the enforcer only what changed (nft.Ruleset.Delta).
type nftC2C struct {
	planner  *c2c.NFTPlanner
	enforcer *nft.Enforcer
}

func newNFTC2C(d nft.Driver) nftC2C {
	return nftC2C{planner: c2c.NewNFTPlanner(), enforcer: c2c.NewNFTEnforcer(d)}
}

func (b nftC2C) plan(in c2c.Inputs, warn c2c.Warn) (c2cPlan, error) {
	rs, err := b.planner.Plan(in, warn)
	if err != nil {
		return c2cPlan{}, err
	}
	r, e := rs.Counts()
	return c2cPlan{ruleset: rs, size: r + e}, nil
}

func (b nftC2C) enforce(ctx context.Context, p c2cPlan) (c2cResult, error) {
	r, err := b.enforcer.Enforce(ctx, p.ruleset, nil)
	return c2cResult{
		Changed: r.Changed(), Full: r.Full, Chain: nft.ChainC2C,
		Added: r.ElementsAdded + r.Rules, Removed: r.ElementsDeleted,
	}, err
}

func (b nftC2C) invalidate()   { b.enforcer.Invalidate() }
func (b nftC2C) Chain() string { return nft.ChainC2C }

// The agent's own iptables chains: upstream's vpa--<timestamp> c2c chains,
// the vpa-dst-<ip> chains of iptables_per_destination_chains
// (c2c.IsDstChain) and the asg-/casg- ASG chains (rules.ASGChainPattern).
var (
	vpaChain = regexp.MustCompile(`^` + c2c.ChainPrefix + `--[0-9]+$`)
	asgChain = regexp.MustCompile(rules.ASGChainPattern)
)

// removeIPTablesChains removes the agent's iptables chains from the filter
// table, with the jumps to them (FORWARD's to vpa--, vpa--'s to vpa-dst-,
// netout--'s to asg-):
// what an agent in nftables mode finds left from iptables mode. It writes
// nothing when there are none. Chains still referenced from chains that
// are not the agent's are flushed and reported.
func removeIPTablesChains(ctx context.Context, d c2c.Driver) (removed, kept []string, err error) {
	_, err = d.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		tx := iptables.NewTx(iptables.Filter)
		removed = cur.ChainNames(func(n string) bool { return vpaChain.MatchString(n) || c2c.IsDstChain(n) || asgChain.MatchString(n) })
		if len(removed) == 0 {
			return tx, nil
		}
		gone := map[string]bool{}
		for _, name := range removed {
			gone[name] = true
		}
		for _, name := range removed {
			parents := map[string]bool{}
			for _, ref := range cur.RefsTo(name) {
				if !gone[ref.Chain] && !parents[ref.Chain] {
					parents[ref.Chain] = true
					iptables.DeleteJumps(tx, cur, name, ref.Chain)
				}
			}
		}
		kept = iptables.RemoveChains(tx, cur, removed...)
		return tx, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("removing the agent's iptables chains: %w", err)
	}
	return removed, kept, nil
}

// deleteNFTTable deletes the inet netman table when it exists: what an
// agent in iptables mode finds left from nftables mode. It writes nothing
// when there is none.
func deleteNFTTable(ctx context.Context, d nft.Driver) (bool, error) {
	names, err := d.ChainNames(ctx)
	if err != nil {
		return false, fmt.Errorf("listing the %s %s table: %w", nft.Family, nft.TableName, err)
	}
	if len(names) == 0 {
		st, err := d.Read(ctx)
		if err != nil {
			return false, fmt.Errorf("reading the %s %s table: %w", nft.Family, nft.TableName, err)
		}
		if !st.Table {
			return false, nil
		}
	}
	tx := d.NewTransaction()
	nft.Delete(tx)
	if err := d.Run(ctx, tx); err != nil {
		return false, fmt.Errorf("deleting the %s %s table: %w", nft.Family, nft.TableName, err)
	}
	return true, nil
}
