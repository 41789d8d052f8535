package appmetrics

import (
	"bufio"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/iptables"
)

// The iptables counting chains, in the mangle table so that no chain of
// upstream's filter or nat tables changes shape. mangle FORWARD runs
// before filter FORWARD (priority -150 against 0): its chain sees every new
// connection the cell forwards, before any verdict. mangle POSTROUTING
// runs after it: its chain sees only what the filters let through. The
// jump to ChainPost skips packets the cell itself sends, so both count
// forwarded traffic only. Their rules have no target: they count and fall
// through.
const (
	ChainSeen = "netman-metrics-fwd"
	ChainPost = "netman-metrics-post"
)

// Jumps from the built-in chains, inserted first.
const (
	JumpSeen = iptables.Rule("-j " + ChainSeen)
	JumpPost = iptables.Rule("-m addrtype ! --src-type LOCAL -j " + ChainPost)
)

// ruleKind is what one counting rule counts.
type ruleKind int

const (
	kindOutBytes ruleKind = iota
	kindInBytes
	kindOutAllowed
	kindInAllowed
	kindOutSeen
	kindInSeen
)

// rule is a container's counting rule of kind, as iptables-save prints it
// (the handle is the comment, so counters read back name their container).
func rule(in Instance, k ruleKind) iptables.Rule {
	addr := "-s "
	if k == kindInBytes || k == kindInAllowed || k == kindInSeen {
		addr = "-d "
	}
	addr += in.IP + "/32"
	if k >= kindOutAllowed {
		addr += " -m conntrack --ctstate NEW"
	}
	return iptables.Rule(addr + " -m comment --comment " + in.Handle)
}

// chainRules are the rules of ChainSeen and of ChainPost that count want.
func chainRules(want []Instance) (seen, post []iptables.Rule) {
	for _, in := range want {
		seen = append(seen, rule(in, kindOutSeen), rule(in, kindInSeen))
		post = append(post, rule(in, kindOutBytes), rule(in, kindInBytes), rule(in, kindOutAllowed), rule(in, kindInAllowed))
	}
	return seen, post
}

// PlanIPTables returns the mangle transaction that makes the counting
// chains count want, from the table as read: the chains and the jumps to
// them created when missing, the rules of containers gone deleted and
// those of new containers appended. Rules that stay are left alone, so
// their counters keep counting; the order of the rules does not matter
// (none has a target).
func PlanIPTables(cur *iptables.State, want []Instance) *iptables.Tx {
	tx := iptables.NewTx(iptables.Mangle)
	seen, post := chainRules(want)
	for _, c := range []struct {
		name  string
		rules []iptables.Rule
	}{{ChainSeen, seen}, {ChainPost, post}} {
		if !cur.Has(c.name) {
			tx.DeclareChain(c.name)
		}
		keep := make(map[iptables.Rule]bool, len(c.rules))
		for _, r := range c.rules {
			keep[r] = true
		}
		have := map[iptables.Rule]bool{}
		for _, r := range cur.Rules(c.name) {
			if !keep[r] || have[r] {
				tx.Delete(c.name, r)
				continue
			}
			have[r] = true
		}
		for _, r := range c.rules {
			if !have[r] {
				tx.Append(c.name, r)
			}
		}
	}
	iptables.EnsureInserted(tx, cur, "FORWARD", 1, JumpSeen)
	iptables.EnsureInserted(tx, cur, "POSTROUTING", 1, JumpPost)
	return tx
}

// RemoveIPTables returns the mangle transaction that removes the counting
// chains and the jumps to them (an agent whose metrics are off, or that
// runs the nftables backend).
func RemoveIPTables(cur *iptables.State) *iptables.Tx {
	tx := iptables.NewTx(iptables.Mangle)
	iptables.DeleteJumps(tx, cur, ChainSeen, "FORWARD")
	iptables.DeleteJumps(tx, cur, ChainPost, "POSTROUTING")
	iptables.RemoveChains(tx, cur, ChainSeen, ChainPost)
	return tx
}

// ParseIPTablesCounters reads the counting rules' counters from
// `iptables-save -c -t mangle` output, by handle.
func ParseIPTablesCounters(text string) (map[string]Counts, error) {
	out := map[string]Counts{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if !strings.HasPrefix(line, "[") {
			continue
		}
		end := strings.IndexByte(line, ']')
		if end < 0 {
			return nil, fmt.Errorf("line %d: no closing ] in %q", n, line)
		}
		pkts, bytes, ok := strings.Cut(line[1:end], ":")
		rest, chained := strings.CutPrefix(strings.TrimSpace(line[end+1:]), "-A ")
		if !ok || !chained {
			return nil, fmt.Errorf("line %d: not a counted rule: %q", n, line)
		}
		chain, spec, _ := strings.Cut(rest, " ")
		if chain != ChainSeen && chain != ChainPost {
			continue
		}
		p, err1 := strconv.ParseUint(pkts, 10, 64)
		b, err2 := strconv.ParseUint(bytes, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("line %d: bad counters in %q", n, line)
		}
		handle, in, isNew, ok := parseRule(spec)
		if !ok {
			continue // not one of ours: left for the next sync to delete
		}
		c := out[handle]
		switch {
		case chain == ChainSeen && isNew && in:
			c.InSeen += p
		case chain == ChainSeen && isNew:
			c.OutSeen += p
		case isNew && in:
			c.InAllowed += p
		case isNew:
			c.OutAllowed += p
		case in:
			c.InBytes, c.InPackets = c.InBytes+b, c.InPackets+p
		default:
			c.OutBytes, c.OutPackets = c.OutBytes+b, c.OutPackets+p
		}
		out[handle] = c
	}
	return out, sc.Err()
}

// parseRule reads a counting rule: its handle, whether it counts traffic
// to the container (-d) and whether it counts new connections.
func parseRule(spec string) (handle string, in, isNew, ok bool) {
	f := strings.Fields(spec)
	addr := false
	for i := 0; i+1 < len(f); i++ {
		switch f[i] {
		case "-s":
			addr = true
		case "-d":
			addr, in = true, true
		case "--ctstate":
			isNew = f[i+1] == "NEW"
		case "--comment":
			handle = strings.Trim(f[i+1], `"`)
		}
	}
	return handle, in, isNew, addr && handle != ""
}

// IPTables is the DataPlane of the iptables backend.
type IPTables struct {
	Driver *iptables.Driver
}

// Sync implements DataPlane: one read and one iptables-restore of mangle,
// under the lock file.
func (d IPTables) Sync(ctx context.Context, want []Instance) error {
	_, err := d.Driver.Update(ctx, iptables.Mangle, func(cur *iptables.State) (*iptables.Tx, error) {
		return PlanIPTables(cur, want), nil
	})
	if err != nil {
		return fmt.Errorf("syncing the metrics chains: %w", err)
	}
	return nil
}

// Read implements DataPlane: one `iptables-save -c -t mangle`.
func (d IPTables) Read(ctx context.Context) (map[string]Counts, error) {
	text, err := d.Driver.SaveCounters(ctx, iptables.Mangle)
	if err != nil {
		return nil, err
	}
	return ParseIPTablesCounters(text)
}
