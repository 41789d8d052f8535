// Package bootstrap is silk-daemon-bootstrap, the pre-start step of a
// single_ip_only VM (a gorouter or TCP router that joins the overlay with
// one /32 lease instead of a cell's subnet): it asks policy-server-internal
// for the tag of the ingress router group and marks everything the VM sends
// into the overlay with it. The mark travels in the VXLAN GBP header, so
// cells can allow router traffic to apps (enable_overlay_ingress_rules).
//
// It owns the filter chain istio-ingress and the OUTPUT rule that jumps to
// it; silk-daemon-shutdown removes both (Remove).
package bootstrap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/iptables"
)

// Upstream's names.
const (
	// IngressChain holds the router's mark rules.
	IngressChain = "istio-ingress"
	// VTEP is the overlay device the marked traffic leaves by.
	VTEP = "silk-vtep"
	// RouterGroupID and RouterGroupType name the policy server's group
	// whose tag routers carry (the agent asks for the same one).
	RouterGroupID   = "INGRESS_ROUTER"
	RouterGroupType = "router"
)

// jump is the OUTPUT rule into IngressChain.
const jump iptables.Rule = "-j " + IngressChain

// Config is bootstrap-config.json.
type Config struct {
	PolicyServerURL        string `json:"policy_server_url"`
	PolicyServerCACertFile string `json:"policy_server_ca_cert_file"`
	PolicyClientCertFile   string `json:"policy_client_cert_file"`
	PolicyClientKeyFile    string `json:"policy_client_key_file"`
	IPTablesLockFile       string `json:"iptables_lock_file"`
	SingleIPOnly           bool   `json:"single_ip_only"`
}

// LoadConfig reads and checks a config file. The policy server settings
// are required only with single_ip_only (without it the bootstrap does
// nothing).
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("file does not exist: %w", err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing config: %w", err)
	}
	if !c.SingleIPOnly {
		return c, nil
	}
	var errs []error
	for _, f := range []struct{ key, value string }{
		{"policy_server_url", c.PolicyServerURL},
		{"policy_server_ca_cert_file", c.PolicyServerCACertFile},
		{"policy_client_cert_file", c.PolicyClientCertFile},
		{"policy_client_key_file", c.PolicyClientKeyFile},
		{"iptables_lock_file", c.IPTablesLockFile},
	} {
		if f.value == "" {
			errs = append(errs, fmt.Errorf("invalid config: %s must not be empty", f.key))
		}
	}
	return c, errors.Join(errs...)
}

// Rules is the content of IngressChain for a router tag (hex, as the
// policy server hands it out), in iptables-save's form.
func Rules(tag string) ([]iptables.Rule, error) {
	v, err := strconv.ParseUint(tag, 16, 32)
	if err != nil || tag == "" {
		return nil, fmt.Errorf("invalid tag %q from the policy server: want hex digits", tag)
	}
	return []iptables.Rule{
		iptables.Rule(fmt.Sprintf("-o %s -j MARK --set-xmark 0x%x/0xffffffff", VTEP, v)),
		iptables.Rule("-o " + VTEP + " -j ACCEPT"),
	}, nil
}

// PlanInstall makes IngressChain hold exactly Rules(tag) (a stale tag is
// replaced) and puts the jump to it first in OUTPUT unless OUTPUT already
// has one.
func PlanInstall(cur *iptables.State, tag string) (*iptables.Tx, error) {
	want, err := Rules(tag)
	if err != nil {
		return nil, err
	}
	tx := iptables.NewTx(iptables.Filter)
	iptables.SyncChain(tx, cur, IngressChain, want)
	iptables.EnsureInserted(tx, cur, "OUTPUT", 1, jump)
	return tx, nil
}

// PlanRemove deletes the jump (every copy) and IngressChain, when there.
func PlanRemove(cur *iptables.State) *iptables.Tx {
	tx := iptables.NewTx(iptables.Filter)
	iptables.DeleteJumps(tx, cur, IngressChain, "OUTPUT")
	iptables.RemoveChains(tx, cur, IngressChain)
	return tx
}

// Tagger gets the tag of a non-app group from policy-server-internal.
type Tagger interface {
	CreateOrGetTag(ctx context.Context, id, groupType string) (string, error)
}

// Table reads and changes one iptables table under the cell's lock.
type Table interface {
	Update(ctx context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error)
}

// Run is the bootstrap: nothing unless single_ip_only; else the router
// tag from the policy server, then the mark rules.
func Run(ctx context.Context, logger lager.Logger, cfg Config, tagger Tagger, ipt Table) error {
	if !cfg.SingleIPOnly {
		logger.Info("not-single-ip-only")
		return nil
	}
	tag, err := tagger.CreateOrGetTag(ctx, RouterGroupID, RouterGroupType)
	if err != nil {
		return fmt.Errorf("get router tag from policy server: %w", err)
	}
	if _, err := ipt.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		return PlanInstall(cur, tag)
	}); err != nil {
		return fmt.Errorf("install %s chain: %w", IngressChain, err)
	}
	logger.Info("marking-overlay-traffic", lager.Data{"tag": tag, "chain": IngressChain})
	return nil
}

// Remove deletes what Run installed.
func Remove(ctx context.Context, ipt Table) error {
	_, err := ipt.Update(ctx, iptables.Filter, func(cur *iptables.State) (*iptables.Tx, error) {
		return PlanRemove(cur), nil
	})
	if err != nil {
		return fmt.Errorf("remove %s chain: %w", IngressChain, err)
	}
	return nil
}
