package iptables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/filelock"
)

// Flavor picks the iptables binaries by name.
type Flavor string

const (
	// FlavorDefault uses iptables, iptables-restore, iptables-save: whatever
	// the host's alternatives point at (nf_tables on current Debian/Ubuntu).
	FlavorDefault Flavor = ""
	// FlavorNFT uses the iptables-nft* binaries.
	FlavorNFT Flavor = "nft"
	// FlavorLegacy uses the iptables-legacy* binaries (what upstream cells run).
	FlavorLegacy Flavor = "legacy"
)

// ParseFlavor accepts "", "default", "nft" and "legacy".
func ParseFlavor(s string) (Flavor, error) {
	switch s {
	case "", "default":
		return FlavorDefault, nil
	case "nft", "legacy":
		return Flavor(s), nil
	}
	return "", fmt.Errorf("iptables: unknown flavor %q (want nft or legacy)", s)
}

// Family is the address family a Driver writes: IPv4 runs the iptables*
// binaries, IPv6 the ip6tables* ones (same flavors, same lock file: on a
// dual-stack cell both families' writers serialise on upstream's lock).
type Family int

const (
	// IPv4 (the zero Family) uses iptables, iptables-restore, iptables-save.
	IPv4 Family = iota
	// IPv6 uses ip6tables, ip6tables-restore, ip6tables-save.
	IPv6
)

// String is "ipv4" or "ipv6".
func (f Family) String() string {
	if f == IPv6 {
		return "ipv6"
	}
	return "ipv4"
}

// command is the binary base name of the family: iptables or ip6tables.
func (f Family) command() string {
	if f == IPv6 {
		return "ip6tables"
	}
	return "iptables"
}

// DefaultLockFile is the flock file upstream's iptables writers share
// (cni-wrapper-plugin, vxlan-policy-agent, netmon, silk-daemon shutdown).
const DefaultLockFile = "/var/vcap/data/garden-cni/iptables.lock"

// Config configures a Driver. Zero values mean upstream's defaults.
type Config struct {
	Flavor Flavor
	// Family picks iptables (IPv4, the default) or ip6tables (IPv6).
	Family Family
	// Binary names or paths; empty picks the flavor's name.
	IPTables, Restore, Save string
	// LockFile is the flock file held around every read and write;
	// empty means DefaultLockFile.
	LockFile string
}

// Driver applies transactions with iptables-restore and reads tables with
// iptables-save, each under the lock file. It is safe for concurrent use.
// The binaries act on the network namespace of the calling thread.
type Driver struct {
	family                  Family
	iptables, restore, save string
	lock                    *filelock.Lock
}

// New returns a Driver for cfg.
func New(cfg Config) *Driver {
	suffix := ""
	if cfg.Flavor != FlavorDefault {
		suffix = "-" + string(cfg.Flavor)
	}
	cmd := cfg.Family.command()
	d := &Driver{
		family:   cfg.Family,
		iptables: cmd + suffix,
		restore:  cmd + suffix + "-restore",
		save:     cmd + suffix + "-save",
	}
	if cfg.IPTables != "" {
		d.iptables = cfg.IPTables
	}
	if cfg.Restore != "" {
		d.restore = cfg.Restore
	}
	if cfg.Save != "" {
		d.save = cfg.Save
	}
	lf := cfg.LockFile
	if lf == "" {
		lf = DefaultLockFile
	}
	d.lock = filelock.New(lf)
	return d
}

// Family is the address family the driver writes.
func (d *Driver) Family() Family { return d.family }

// Binaries returns the iptables, iptables-restore and iptables-save names used.
func (d *Driver) Binaries() (iptables, restore, save string) {
	return d.iptables, d.restore, d.save
}

// Apply runs the transactions in one iptables-restore --noflush -w call under
// the lock. Each table commits on its own; on failure the error says which
// input line iptables-restore rejected. Empty transactions are skipped.
func (d *Driver) Apply(ctx context.Context, txs ...*Tx) error {
	tables := make([]string, 0, len(txs))
	for _, t := range txs {
		if t != nil {
			tables = append(tables, t.table)
		}
	}
	if err := validTables(tables); err != nil {
		return err
	}
	payload := Render(txs...)
	if payload == "" {
		return nil
	}
	return d.locked(ctx, nil, func() error { return d.restoreLocked(ctx, payload) })
}

// Save reads one table under the lock.
func (d *Driver) Save(ctx context.Context, table string) (st *State, err error) {
	err = d.locked(ctx, []string{table}, func() error {
		st, err = d.saveLocked(ctx, table)
		return err
	})
	return st, err
}

// SaveCounters returns `iptables-save -c -t table`: every rule with its
// packet and byte counters. It does not take the lock file: a read needs
// none, and a scrape must not wait for a writer.
func (d *Driver) SaveCounters(ctx context.Context, table string) (string, error) {
	if err := validTable(table); err != nil {
		return "", err
	}
	return d.saveText(ctx, "-c", "-t", table)
}

// PlanFunc computes the changes to a table from its current state. It must
// be pure: Update may call it twice.
type PlanFunc func(cur *State) (*Tx, error)

// Update reads table, plans against what it read and applies the plan, all
// under one hold of the lock so no cooperating writer changes the table in
// between. If iptables-restore rejects the plan (another program changed the
// table anyway), it reads and plans once more. It returns the state it
// planned against last.
func (d *Driver) Update(ctx context.Context, table string, plan PlanFunc) (cur *State, err error) {
	err = d.locked(ctx, []string{table}, func() error {
		return replanOnce(func() error {
			if cur, err = d.saveLocked(ctx, table); err != nil {
				return err
			}
			tx, err := plan(cur)
			switch {
			case err != nil || tx == nil || tx.Empty():
				return err
			case tx.table != table:
				return fmt.Errorf("iptables: plan for table %s returned a %s transaction", table, tx.table)
			}
			return d.restoreLocked(ctx, tx.String())
		})
	})
	return cur, err
}

// MultiPlanFunc computes changes to several tables from their current
// states (keyed by table name). It must be pure: UpdateTables may call it
// twice.
type MultiPlanFunc func(cur map[string]*State) ([]*Tx, error)

// UpdateTables is Update for several tables at once: one iptables-save of
// every table, one plan, one iptables-restore (each table still commits on
// its own). Reading once matters on nf_tables, where iptables-save fetches
// the whole ruleset whatever -t says.
func (d *Driver) UpdateTables(ctx context.Context, tables []string, plan MultiPlanFunc) (cur map[string]*State, err error) {
	err = d.locked(ctx, tables, func() error {
		return replanOnce(func() error {
			out, err := d.saveText(ctx)
			if err == nil {
				cur, err = ParseSaveTables(out, tables...)
			}
			if err != nil {
				cur = nil
				return err
			}
			txs, err := plan(cur)
			if err != nil {
				return err
			}
			payload := Render(txs...)
			if payload == "" {
				return nil
			}
			return d.restoreLocked(ctx, payload)
		})
	})
	return cur, err
}

// locked checks the table names, then runs fn holding the lock.
func (d *Driver) locked(ctx context.Context, tables []string, fn func() error) error {
	if err := validTables(tables); err != nil {
		return err
	}
	unlock, err := d.lock.Acquire(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	return fn()
}

func validTables(tables []string) error {
	for _, t := range tables {
		if err := validTable(t); err != nil {
			return err
		}
	}
	return nil
}

// replanOnce runs a read-plan-restore attempt, and once more when
// iptables-restore rejected the plan: another program changed the table
// after it was read.
func replanOnce(attempt func() error) error {
	err := attempt()
	var re *RestoreError
	if errors.As(err, &re) {
		err = attempt()
	}
	return err
}

func (d *Driver) saveText(ctx context.Context, args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, d.save, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", d.save, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (d *Driver) saveLocked(ctx context.Context, table string) (*State, error) {
	out, err := d.saveText(ctx, "-t", table)
	if err != nil {
		return nil, err
	}
	return ParseSave(table, out)
}

func (d *Driver) restoreLocked(ctx context.Context, payload string) error {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, d.restore, "--noflush", "-w")
	cmd.Stdin = strings.NewReader(payload)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", d.restore, ctx.Err())
		}
		return newRestoreError(d.restore, payload, out.String(), err)
	}
	return nil
}

// RestoreError is a rejected iptables-restore payload.
type RestoreError struct {
	Binary string
	Err    error  // the exit error
	Output string // what iptables-restore printed
	Line   int    // 1-based input line it blamed, 0 if none
	Text   string // that line
}

var lineRe = regexp.MustCompile(`(?:Error occurred at line: |line )(\d+)`)

func newRestoreError(binary, payload, output string, err error) *RestoreError {
	re := &RestoreError{Binary: binary, Err: err, Output: strings.TrimSpace(output)}
	if m := lineRe.FindStringSubmatch(output); m != nil {
		re.Line, _ = strconv.Atoi(m[1])
		lines := strings.Split(payload, "\n")
		if re.Line >= 1 && re.Line <= len(lines) {
			re.Text = lines[re.Line-1]
		}
	}
	return re
}

func (e *RestoreError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Binary, e.Err)
	if e.Line > 0 {
		msg += fmt.Sprintf(": line %d %q", e.Line, e.Text)
		if e.Text == "COMMIT" {
			// nf_tables reports failures found at commit time against the
			// COMMIT line; the output names the rule or chain at fault.
			msg += " (failed at commit)"
		}
	}
	if e.Output != "" {
		msg += ": " + strings.ReplaceAll(e.Output, "\n", "; ")
	}
	return msg
}

func (e *RestoreError) Unwrap() error { return e.Err }
