package asg

import (
	"context"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/policy"
)

// fakeSource serves security groups from memory.
type fakeSource struct {
	mu     sync.Mutex
	groups []policy.SecurityGroup
	err    error
	calls  [][]string
}

func (f *fakeSource) SecurityGroups(_ context.Context, spaces []string) ([]policy.SecurityGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, slices.Clone(spaces))
	if f.err != nil {
		return nil, f.err
	}
	return slices.Clone(f.groups), nil
}

func (f *fakeSource) set(groups ...policy.SecurityGroup) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.groups = groups
}

// recorder wraps a Driver and records reads and the transactions written.
type recorder struct {
	Driver
	mu     sync.Mutex
	reads  int
	writes [][]string
}

func (r *recorder) Update(ctx context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error) {
	var last *iptables.Tx
	st, err := r.Driver.Update(ctx, table, func(cur *iptables.State) (*iptables.Tx, error) {
		tx, err := plan(cur)
		last = tx
		return tx, err
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads++
	if err == nil && last != nil && !last.Empty() {
		r.writes = append(r.writes, last.Lines())
	}
	return st, err
}

func (r *recorder) counts() (reads, writes int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, len(r.writes)
}

func (r *recorder) lastWrite() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.writes) == 0 {
		return nil
	}
	return r.writes[len(r.writes)-1]
}

// applier is what the fake and the real driver both offer.
type applier interface {
	Apply(ctx context.Context, txs ...*iptables.Tx) error
}

// wrapperConfig is the cni-wrapper-plugin config the tests' containers are
// set up with (only what the filter chains depend on).
func wrapperConfig(asgLogging bool, conn cniwrapper.OutConn) *cniwrapper.Config {
	return &cniwrapper.Config{
		InstanceAddress: "10.244.0.3", NoMasqueradeCIDRRange: "10.255.0.0/16",
		IPTablesASGLogging: asgLogging, IPTablesDeniedLogsPerSec: 1, IPTablesAcceptedUDPLogsPerSec: 100,
		IngressTag: "ffff0000", VTEPName: "silk-vtep", OutConn: conn,
	}
}

// addContainer installs the filter chains cni-wrapper-plugin's ADD creates
// for c (netout--H with the defaults only, as when the agent's dynamic ASGs
// are on).
func addContainer(t testing.TB, d applier, cfg *cniwrapper.Config, c Container) {
	t.Helper()
	plan, err := cniwrapper.PlanAdd(cfg, cniwrapper.Container{
		Handle: c.Handle, IP: netip.MustParseAddr(c.IP), Workload: c.Workload, Interfaces: []string{"eth0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Apply(context.Background(), plan.Filter); err != nil {
		t.Fatal(err)
	}
}

// dump renders a filter table deterministically: built-in chains first,
// then user chains by name, each with its rules.
func dump(st *iptables.State) string {
	var builtin, user []*iptables.Chain
	for _, c := range st.Chains() {
		if c.Builtin() {
			builtin = append(builtin, c)
		} else {
			user = append(user, c)
		}
	}
	sort.Slice(user, func(i, j int) bool { return user[i].Name < user[j].Name })
	var b strings.Builder
	for _, c := range append(builtin, user...) {
		b.WriteString(":" + c.Name + " " + c.Policy + "\n")
		for _, r := range c.Rules {
			b.WriteString("-A " + c.Name + " " + string(r) + "\n")
		}
	}
	return b.String()
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
