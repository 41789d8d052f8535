package nft

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

// Run implements Driver. An empty transaction runs nothing. One made only
// of element additions and deletions on sets whose types the Kernel knows
// is sent over netlink; anything else is run by nft, with consecutive
// element commands on one set batched into one command.
func (k *Kernel) Run(ctx context.Context, tx *knftables.Transaction) error {
	if tx.NumOperations() == 0 {
		return nil
	}
	text := tx.String()
	if i := strings.Index(text, "# ERROR: "); i >= 0 {
		return &RunError{Ops: tx.NumOperations(), Err: errors.New(strings.TrimPrefix(text[i:], "# ERROR: "))}
	}
	if ops, ok := parseOps(text); ok {
		err := k.sendOps(ops)
		if err == nil {
			k.netlinkRuns.Add(1)
			return nil
		}
		if !errors.Is(err, errNoFastPath) {
			k.types.reset() // the kernel's sets are not what the Kernel thought
			return &RunError{Ops: tx.NumOperations(), Err: err}
		}
	}
	return k.runNFT(ctx, text, tx.NumOperations())
}

// runNFT runs a transaction's text through nft -f.
func (k *Kernel) runNFT(ctx context.Context, text string, ops int) error {
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

// NetlinkRuns counts the transactions this Kernel sent over netlink
// instead of running nft.
func (k *Kernel) NetlinkRuns() int64 { return k.netlinkRuns.Load() }

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

// Read implements Driver: rules come from the text listing (the form the
// planners write), chains' hooks and every element from the numeric JSON
// listing, turned back into canonical text.
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
	js, err := k.list(ctx, "-j", "-n", "list", "table", string(Family), TableName)
	if err != nil {
		return nil, err
	}
	if err := parseJSON(st, []byte(js)); err != nil {
		return nil, err
	}
	k.types.reset()
	k.types.learnState(st)
	return st, nil
}

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
