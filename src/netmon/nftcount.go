package netmon

import (
	"context"
	"fmt"

	"github.com/google/nftables"

	"github.com/netman-release/netman/src/nft"
)

// NFTCounts are what netmon reports of netman's nftables table
// (enforcement_backend: nftables).
type NFTCounts struct {
	// Rules is the number of rules in the table's chains, base chains
	// included (nft's `list table` prints one line per rule).
	Rules int
	// Elements is the number of elements of the table's named sets and
	// maps: one per element however many fields it has, an interval (a
	// range or prefix) counted once. Anonymous sets (part of a rule) and
	// the connection rate limit's meters (sets with a timeout, whose
	// entries are traffic, not configuration) are not counted.
	Elements int
}

// NFTCounter counts netman's nftables table.
type NFTCounter interface {
	CountNFT(ctx context.Context) (NFTCounts, error)
}

// NFTTable counts the table inet netman of the calling thread's network
// namespace over netlink (dumps of its chains' rules and its sets'
// elements, nothing written). A namespace without the table (no container
// yet, the agent not started) counts zero.
type NFTTable struct{}

// CountNFT implements NFTCounter.
func (NFTTable) CountNFT(context.Context) (NFTCounts, error) {
	var n NFTCounts
	conn, err := nftables.New()
	if err != nil {
		return n, err
	}
	tables, err := conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return n, fmt.Errorf("listing tables: %w", err)
	}
	var table *nftables.Table
	for _, t := range tables {
		if t.Name == nft.TableName {
			table = t
		}
	}
	if table == nil {
		return n, nil
	}
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return n, fmt.Errorf("listing chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name != nft.TableName {
			continue
		}
		rules, err := conn.GetRules(table, c)
		if err != nil {
			return n, fmt.Errorf("listing the rules of %s: %w", c.Name, err)
		}
		n.Rules += len(rules)
	}
	sets, err := conn.GetSets(table)
	if err != nil {
		return n, fmt.Errorf("listing sets: %w", err)
	}
	for _, s := range sets {
		if s.Anonymous || s.HasTimeout || s.Dynamic {
			continue
		}
		els, err := conn.GetSetElements(s)
		if err != nil {
			return n, fmt.Errorf("listing the elements of %s: %w", s.Name, err)
		}
		for _, e := range els {
			// An interval of a plain interval set is two kernel elements,
			// its start and its end (flagged); one of a concatenated one
			// is one element holding both.
			if !e.IntervalEnd {
				n.Elements++
			}
		}
	}
	return n, nil
}
