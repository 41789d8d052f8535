package nft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strings"
	"sync/atomic"

	"sigs.k8s.io/knftables"
)

// Driver applies transactions to netman's table and reads it back. The
// Kernel runs the nft binary; Fake keeps the table in memory.
type Driver interface {
	// NewTransaction starts a transaction on netman's table.
	NewTransaction() *knftables.Transaction
	// Run applies tx as one nft transaction: all of it or nothing.
	Run(ctx context.Context, tx *knftables.Transaction) error
	// Read reads the whole table: chains with their rules, sets and maps
	// with their elements. A table that does not exist reads as an empty
	// State. It costs a listing of everything (seconds with hundreds of
	// thousands of elements): full resyncs only.
	Read(ctx context.Context) (*State, error)
	// ChainNames lists the table's chains, without rules (cheap).
	ChainNames(ctx context.Context) (map[string]bool, error)
	// ReadSet reads one set (or map, when isMap) with its elements, cheap
	// for a small one; nil when it does not exist.
	ReadSet(ctx context.Context, name string, isMap bool) (*SetState, error)
	// Has reports whether every named chain and set exists (cheap: no
	// rules or elements are read); false when it cannot tell.
	Has(ctx context.Context, chains, sets []string) bool
	// RemoveUnusedSets deletes every set whose name starts with prefix
	// and that no rule refers to, each in its own transaction, and returns
	// the names deleted. A set a rule refers to is left, whoever added
	// the rule and however recently, so it is safe against concurrent
	// writers.
	RemoveUnusedSets(ctx context.Context, prefix string) ([]string, error)
}

// Kernel is the Driver on the nft binary: transactions are built with
// sigs.k8s.io/knftables and run by nft, except those made only of element
// changes, which go over netlink from the calling process (netlink.go).
// Like iptables, both act on the network namespace of the calling thread.
// Kernel is safe for concurrent use; transactions are serialised by the
// kernel, so no lock file is needed.
type Kernel struct {
	knft  knftables.Interface
	path  string
	types typeCache
	// netlinkRuns counts the transactions sent over netlink (tests).
	netlinkRuns atomic.Int64
}

// New returns a Kernel, after checking that nft (≥ 1.0.1) runs and that
// the caller may change the ruleset.
func New() (*Kernel, error) {
	k, err := knftables.New(Family, TableName)
	if err != nil {
		return nil, fmt.Errorf("nft: %w", err)
	}
	path, err := exec.LookPath("nft")
	if err != nil {
		return nil, fmt.Errorf("nft: %w", err)
	}
	kern := &Kernel{knft: k, path: path}
	kern.types.reset()
	return kern, nil
}

// NewTransaction implements Driver.
func (k *Kernel) NewTransaction() *knftables.Transaction { return k.knft.NewTransaction() }

// Run implements Driver. An empty transaction runs nothing. One the fast
// path can carry (element additions and deletions, at most
// maxNetlinkElements, on sets whose types the Kernel knows, and the
// regular chains and rules netlinkrules.go encodes) is sent over netlink
// as one batch. A bulk load (thousands of elements into sets the
// transaction creates) is run in parts when the Enforcer runs it (see
// Kernel.bulk and withBulk); anything else is run by nft, with
// consecutive element commands on one set batched into one command.
func (k *Kernel) Run(ctx context.Context, tx *knftables.Transaction) error {
	if tx.NumOperations() == 0 {
		return nil
	}
	text := tx.String()
	if i := strings.Index(text, "# ERROR: "); i >= 0 {
		return &RunError{Ops: tx.NumOperations(), Err: errors.New(strings.TrimPrefix(text[i:], "# ERROR: "))}
	}
	if ops, ok := parseOps(text); ok {
		err := k.sendOps(ops, math.MaxInt)
		if err == nil {
			k.netlinkRuns.Add(1)
			return nil
		}
		if !errors.Is(err, errNoFastPath) {
			k.types.reset() // the kernel's sets are not what the Kernel thought
			return &RunError{Ops: tx.NumOperations(), Err: err}
		}
	}
	if bulkAllowed(ctx) {
		if segs, elements := segments(text); elements > maxNetlinkElements && k.bulk(text, segs) {
			return k.runParts(ctx, tx.NumOperations(), segs)
		}
	}
	return k.runNFT(ctx, tx.NumOperations(), text)
}

// bulkKey marks a context whose caller converges from what the table
// holds after a failure (the Enforcer), so a bulk load may run in parts.
type bulkKey struct{}

// withBulk allows Run to split a bulk load into parts.
func withBulk(ctx context.Context) context.Context { return context.WithValue(ctx, bulkKey{}, true) }

// bulkAllowed reports whether ctx came through withBulk. Other callers
// (cni-wrapper-plugin's ADD, which trusts shared sets it finds) always
// get one transaction, all of it or nothing.
func bulkAllowed(ctx context.Context) bool { b, _ := ctx.Value(bulkKey{}).(bool); return b }

// runParts runs a bulk transaction's segments in order: element runs over
// netlink (through nft when they cannot be encoded), the rest by nft.
func (k *Kernel) runParts(ctx context.Context, ops int, segs []segment) error {
	for i, s := range segs {
		if s.ops == nil {
			if err := k.runNFT(ctx, ops, s.text); err != nil {
				return partError(err, i, len(segs))
			}
			continue
		}
		nlops := make([]netlinkOp, len(s.ops))
		for j, op := range s.ops {
			nlops[j] = netlinkOp{verb: "element", el: op}
		}
		err := k.sendOps(nlops, netlinkBatchElements)
		if errors.Is(err, errNoFastPath) {
			err = k.runNFT(ctx, ops, s.text)
		} else if err == nil {
			k.netlinkRuns.Add(1)
		} else {
			k.types.reset()
			err = &RunError{Ops: ops, Err: err}
		}
		if err != nil {
			return partError(err, i, len(segs))
		}
	}
	return nil
}

// partError says which part of a bulk transaction failed; the parts
// before it stay applied.
func partError(err error, part, parts int) error {
	if re, ok := err.(*RunError); ok && part > 0 {
		return &RunError{Ops: re.Ops, Err: fmt.Errorf("part %d of %d (the parts before it were applied): %w", part+1, parts, re.Err)}
	}
	return err
}

// runNFT runs text (commands of a transaction of ops operations) by nft.
func (k *Kernel) runNFT(ctx context.Context, ops int, text string) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.path, "-f", "-")
	cmd.Stdin = strings.NewReader(batchElements(text))
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		k.types.reset()
		if ctx.Err() != nil {
			return fmt.Errorf("nft: %w", ctx.Err())
		}
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%w: %s", err, msg)
		}
		return &RunError{Ops: ops, Err: err}
	}
	k.types.learnCommands(text)
	return nil
}

// RunError is a transaction nft rejected; nothing of it was applied.
type RunError struct {
	Ops int // operations in the transaction
	Err error
}

func (e *RunError) Error() string {
	msg := strings.TrimSpace(e.Err.Error())
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		// nft prints the failing command and a caret line below the error.
		msg = msg[:i] + " (" + strings.Join(strings.Fields(msg[i+1:]), " ") + ")"
	}
	if len(msg) > 2000 {
		msg = msg[:2000] + "..."
	}
	return fmt.Sprintf("nft: transaction of %d operations rejected: %s", e.Ops, msg)
}

func (e *RunError) Unwrap() error { return e.Err }

// NetlinkRuns counts the transactions this Kernel sent over netlink
// instead of running nft.
func (k *Kernel) NetlinkRuns() int64 { return k.netlinkRuns.Load() }

// Read implements Driver: rules come from the terse text listing of the
// table (the form the planners write; the one listing here whose cost
// grows with the elements, since nft fetches them all to print rules),
// chains' hooks and the sets' definitions from terse JSON listings of
// chains, sets and maps, and elements over netlink, decoded into canonical text
// (readElements); the elements of sets netlink cannot decode come from
// nft's numeric JSON listing of those sets (of the whole table when there
// are more than maxListedSets of them).
func (k *Kernel) Read(ctx context.Context) (*State, error) {
	st := NewState()
	text, err := k.list(ctx, "-t", "list", "table", string(Family), TableName)
	if err != nil {
		if isNoSuch(err) {
			k.types.reset()
			return st, nil
		}
		return nil, err
	}
	st.Table = true
	if err := parseRulesText(st, text); err != nil {
		return nil, err
	}
	// Chains' hooks and the sets' and maps' definitions, without elements
	// (these listings do not make nft fetch any element, as a listing of
	// the table or of a chain does, even terse); the elements over netlink
	// where they can be decoded (readElements).
	for _, what := range []string{"chains", "sets", "maps"} {
		js, err := k.list(ctx, "-j", "-t", "-n", "list", what, string(Family))
		if err != nil {
			return nil, err
		}
		if err := parseJSON(st, []byte(js)); err != nil {
			return nil, err
		}
	}
	k.types.reset()
	k.types.learnState(st)
	slow, err := k.readElements(st, maxListedSets)
	if err != nil {
		return nil, err
	}
	if len(slow) > maxListedSets {
		// Every set's elements from one listing of the table.
		full := NewState()
		js, err := k.list(ctx, "-j", "-n", "list", "table", string(Family), TableName)
		if err != nil {
			return nil, err
		}
		if err := parseJSON(full, []byte(js)); err != nil {
			return nil, err
		}
		for name, s := range st.Sets {
			if fs := full.Sets[name]; fs != nil && !s.Dynamic {
				s.Elements = fs.Elements
			}
		}
		return st, nil
	}
	for _, s := range slow {
		rs, err := k.ReadSet(ctx, s.Name, s.Value != "")
		if err != nil {
			return nil, err
		}
		if rs != nil {
			s.Elements = rs.Elements
		}
	}
	return st, nil
}

// maxListedSets is how many sets Read lists one by one through nft when
// their elements cannot be read over netlink; with more it lists the
// whole table once.
const maxListedSets = 8

// ChainNames implements Driver: one netlink dump of the family's chains
// (names only), or nft's listing if that fails.
func (k *Kernel) ChainNames(ctx context.Context) (map[string]bool, error) {
	if names, err := chainNamesNetlink(); err == nil {
		return names, nil
	}
	out, err := k.list(ctx, "-j", "list", "chains", string(Family))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("nft: parsing chain list: %w", err)
	}
	names := map[string]bool{}
	for _, obj := range doc.Nftables {
		raw, ok := obj["chain"]
		if !ok {
			continue
		}
		var c struct{ Table, Name string }
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("nft: parsing chain list: %w", err)
		}
		if c.Table == TableName {
			names[c.Name] = true
		}
	}
	return names, nil
}

// ReadSet implements Driver.
func (k *Kernel) ReadSet(ctx context.Context, name string, isMap bool) (*SetState, error) {
	kind := "set"
	if isMap {
		kind = "map"
	}
	out, err := k.list(ctx, "-j", "-n", "list", kind, string(Family), TableName, name)
	if err != nil {
		if isNoSuch(err) {
			return nil, nil
		}
		return nil, err
	}
	st := NewState()
	if err := parseJSON(st, []byte(out)); err != nil {
		return nil, err
	}
	k.types.learnState(st)
	return st.Sets[name], nil
}

func (k *Kernel) list(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, k.path, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", &listError{args: args, err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.String(), nil
}

type listError struct {
	args   []string
	err    error
	stderr string
}

func (e *listError) Error() string {
	return fmt.Sprintf("nft %s: %v: %s", strings.Join(e.args, " "), e.err, e.stderr)
}

func (e *listError) Unwrap() error { return e.err }

func isNoSuch(err error) bool {
	le, ok := err.(*listError)
	return ok && strings.Contains(le.stderr, "No such file or directory")
}
