package nfttest

import (
	"context"
	"testing"

	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// NSDriver runs every call of a Driver inside a namespace, so the test's
// own traffic (HTTP to a fake agent) stays in the test's namespace.
type NSDriver struct {
	D  nft.Driver
	NS *netnstest.NS
}

// NewTransaction implements nft.Driver.
func (n NSDriver) NewTransaction() *knftables.Transaction { return n.D.NewTransaction() }

// Run implements nft.Driver.
func (n NSDriver) Run(ctx context.Context, tx *knftables.Transaction) error {
	return n.NS.Do(func() error { return n.D.Run(ctx, tx) })
}

// Read implements nft.Driver.
func (n NSDriver) Read(ctx context.Context) (st *nft.State, err error) {
	err = n.NS.Do(func() error { st, err = n.D.Read(ctx); return err })
	return st, err
}

// ChainNames implements nft.Driver.
func (n NSDriver) ChainNames(ctx context.Context) (m map[string]bool, err error) {
	err = n.NS.Do(func() error { m, err = n.D.ChainNames(ctx); return err })
	return m, err
}

// ReadSet implements nft.Driver.
func (n NSDriver) ReadSet(ctx context.Context, name string, isMap bool) (s *nft.SetState, err error) {
	err = n.NS.Do(func() error { s, err = n.D.ReadSet(ctx, name, isMap); return err })
	return s, err
}

// Has implements nft.Driver.
func (n NSDriver) Has(ctx context.Context, chains, sets []string) (ok bool) {
	_ = n.NS.Do(func() error { ok = n.D.Has(ctx, chains, sets); return nil })
	return ok
}

// RemoveUnusedSets implements nft.Driver.
func (n NSDriver) RemoveUnusedSets(ctx context.Context, prefix string) (names []string, err error) {
	err = n.NS.Do(func() error { names, err = n.D.RemoveUnusedSets(ctx, prefix); return err })
	return names, err
}

// NewNSKernel makes a network namespace (removed when the test ends) and
// an nft.Kernel in it, returned also wrapped as an NSDriver.
func NewNSKernel(tb testing.TB, name string) (*nft.Kernel, NSDriver) {
	tb.Helper()
	netnstest.RequireRoot(tb)
	ns := netnstest.New(tb, name)
	var k *nft.Kernel
	if err := ns.Do(func() (err error) { k, err = nft.New(); return err }); err != nil {
		tb.Fatal(err)
	}
	return k, NSDriver{D: k, NS: ns}
}
