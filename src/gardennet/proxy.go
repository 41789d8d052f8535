package gardennet

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/netman-release/netman/src/iptables"
)

// tableApplier is the part of the iptables driver the redirect uses.
type tableApplier interface {
	Apply(ctx context.Context, txs ...*iptables.Tx) error
}

// ProxyRedirect sends a container's TCP traffic to a sidecar proxy on
// ProxyPort (experimental, off by default): egress to CIDR, and with
// Ingress all inbound TCP. The rules live in the container's own nat table.
type ProxyRedirect struct {
	IPTables  tableApplier
	CIDR      string
	ProxyPort int
	Ingress   bool
	// Enter runs fn inside the network namespace at nsPath; nil enters it
	// for real (tests substitute a no-op).
	Enter func(nsPath string, fn func() error) error
}

// ProxyRedirectTx renders the redirect rules as one nat transaction, in
// iptables-save's canonical form; nil when there is nothing to install.
func ProxyRedirectTx(cidr string, port int, ingress bool) (*iptables.Tx, error) {
	if cidr == "" && !ingress {
		return nil, nil
	}
	tx := iptables.NewTx(iptables.NAT)
	to := " -j REDIRECT --to-ports " + strconv.Itoa(port)
	if cidr != "" {
		prefix, err := parseCIDR(cidr)
		if err != nil {
			return nil, err
		}
		tx.Append("OUTPUT", iptables.Rule("-d "+prefix.String()+" -p tcp"+to))
	}
	if ingress {
		tx.Append("PREROUTING", iptables.Rule("-p tcp"+to))
	}
	return tx, nil
}

// parseCIDR accepts a CIDR or a bare address and returns it masked, as
// iptables prints it back.
func parseCIDR(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("invalid proxy_redirect_cidr %q", s)
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("invalid proxy_redirect_cidr %q", s)
	}
	return p.Masked(), nil
}

// Apply installs the rules inside the container at nsPath with one
// iptables-restore, or does nothing when the redirect is off.
func (r *ProxyRedirect) Apply(ctx context.Context, nsPath string) error {
	tx, err := ProxyRedirectTx(r.CIDR, r.ProxyPort, r.Ingress)
	if err != nil || tx == nil {
		return err
	}
	enter := r.Enter
	if enter == nil {
		enter = enterNetNS
	}
	return enter(nsPath, func() error { return r.IPTables.Apply(ctx, tx) })
}

// enterNetNS runs fn on a thread switched into the namespace; commands fn
// starts are forked from that thread and so run in the namespace too.
func enterNetNS(nsPath string, fn func() error) error {
	netNS, err := ns.GetNS(nsPath)
	if err != nil {
		return err
	}
	defer netNS.Close()
	if err := netNS.Do(func(ns.NetNS) error { return fn() }); err != nil {
		return fmt.Errorf("do in container: %w", err)
	}
	return nil
}
