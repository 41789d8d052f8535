package cniwrapper

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/netlinkx"
	"github.com/netman-release/netman/src/nft"
)

// Delegate runs the delegate plugin (silk-cni).
type Delegate interface {
	Add(ctx context.Context, pluginType string, netconf []byte) (types.Result, error)
	Del(ctx context.Context, pluginType string, netconf []byte) error
}

// Tables is the part of the iptables driver the plugin uses.
type Tables interface {
	Apply(ctx context.Context, txs ...*iptables.Tx) error
	UpdateTables(ctx context.Context, tables []string, plan iptables.MultiPlanFunc) (map[string]*iptables.State, error)
}

// Store is the part of the container metadata store the plugin uses.
type Store interface {
	Add(ctx context.Context, handle, ip string, metadata map[string]any) error
	Delete(ctx context.Context, handle string) (metadata.Container, error)
}

// Plugin runs ADD and DEL. The zero value is not usable; NewPlugin wires the
// real dependencies and tests replace fields.
type Plugin struct {
	Delegate Delegate
	// Tables and Store build the iptables driver and metadata store from
	// the config.
	Tables func(cfg *Config) Tables
	// Tables6 builds the ip6tables driver (same flavor and lock file),
	// used when ipv6_overlay_network makes the container dual-stack.
	Tables6 func(cfg *Config) Tables
	Store   func(cfg *Config) Store
	// NFT builds the nftables driver (enforcement_backend: nftables).
	NFT func(cfg *Config) (nft.Driver, error)
	// HTTP calls the policy agent's force endpoints.
	HTTP *http.Client
	// Interfaces maps underlay IPs to interface names.
	Interfaces func(ips []string) ([]string, error)
	// Stderr receives warnings and ignored DEL errors, as upstream.
	Stderr io.Writer
}

// ForceTimeout bounds each call to the policy agent. Upstream has no limit,
// so a hung agent hangs container creation until garden gives up.
const ForceTimeout = 60 * time.Second

// NewPlugin returns a plugin with the real delegate (exec from CNI_PATH),
// iptables driver, metadata store and netlink lookups.
func NewPlugin() *Plugin {
	return &Plugin{
		Delegate: execDelegate{},
		Tables: func(cfg *Config) Tables {
			flavor, _ := iptables.ParseFlavor(cfg.IPTablesFlavor)
			return iptables.New(iptables.Config{Flavor: flavor, LockFile: cfg.IPTablesLockFile})
		},
		Tables6: func(cfg *Config) Tables {
			flavor, _ := iptables.ParseFlavor(cfg.IPTablesFlavor)
			return iptables.New(iptables.Config{Flavor: flavor, Family: iptables.IPv6, LockFile: cfg.IPTablesLockFile})
		},
		Store: func(cfg *Config) Store {
			return metadata.New(cfg.Datastore, metadata.WithOwner(cfg.DatastoreFileOwner, cfg.DatastoreFileGroup))
		},
		NFT:        func(*Config) (nft.Driver, error) { return nft.New() },
		HTTP:       &http.Client{Timeout: ForceTimeout},
		Interfaces: InterfaceNamesForIPs,
		Stderr:     os.Stderr,
	}
}

func (p *Plugin) warnf(format string, args ...any) {
	fmt.Fprintf(p.Stderr, format+"\n", args...)
}

// Add runs ADD and returns the result to print, in the conflist's version.
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) (types.Result, error) {
	cfg, err := LoadConfig(args.StdinData)
	if err != nil {
		return nil, err
	}
	// nftables transactions need no lock: the kernel serialises them.
	if !cfg.NFTables() {
		if err := prepareLockFile(cfg); err != nil {
			return nil, err
		}
	}
	delegateConf, delegateType, err := delegateParams(cfg.Delegate)
	if err != nil {
		return nil, err
	}

	raw, err := p.Delegate.Add(ctx, delegateType, delegateConf)
	if err != nil {
		// %v, not %w: skel would print a wrapped CNI error without our prefix.
		return nil, fmt.Errorf("delegate call: %v", err)
	}
	result, err := types100.NewResultFromResult(raw)
	if err != nil {
		err = fmt.Errorf("converting result from delegate plugin: %w", err)
	}
	var ip netip.Addr
	if err == nil {
		ip, err = containerIP(result)
	}
	if err != nil {
		// The delegate holds an address we cannot use; give it back.
		p.rollback(ctx, cfg, args.ContainerID, netip.Addr{}, delegateConf, delegateType, rollbackDelegate)
		return nil, err
	}

	// From here on, a failure undoes everything this ADD did, so garden
	// never sees a half-set-up container (upstream left the pieces for a
	// later DEL).
	var stage rollbackStage = rollbackDelegate
	fail := func(err error) (types.Result, error) {
		p.rollback(ctx, cfg, args.ContainerID, ip, delegateConf, delegateType, stage)
		return nil, err
	}

	workload, _ := cfg.Metadata["container_workload"].(string)
	if err := p.Store(cfg).Add(ctx, args.ContainerID, ip.String(), cfg.Metadata); err != nil {
		return fail(fmt.Errorf("store add: %w", err))
	}
	stage = rollbackStore

	if err := p.force(ctx, cfg, "/force-policy-poll-cycle", func(code int, body []byte) error {
		if code != http.StatusOK {
			return fmt.Errorf("vpa response code: %v with message: %s", code, body)
		}
		return nil
	}); err != nil {
		return fail(err)
	}

	ifaces := cfg.TemporaryUnderlayInterfaceNames
	if len(ifaces) == 0 {
		if ifaces, err = p.Interfaces(cfg.UnderlayIPs); err != nil {
			return fail(fmt.Errorf("looking up interface names: %w", err))
		}
	}
	ctr := Container{Handle: args.ContainerID, IP: ip, Workload: workload, Interfaces: ifaces}
	var setNetOut func() error // installs garden's netOut rules
	if cfg.NFTables() {
		plan, err := PlanAddNFT(cfg, ctr)
		if err != nil {
			return fail(err)
		}
		d, err := p.NFT(cfg)
		if err != nil {
			return fail(fmt.Errorf("installing nftables rules: %w", err))
		}
		stage = rollbackRules
		if err := NFTAdd(ctx, d, plan); err != nil {
			return fail(fmt.Errorf("installing nftables rules: %w", err))
		}
		setNetOut = func() error {
			rs, warnings := plan.NetOut(cfg.RuntimeConfig.NetOutRules)
			for _, w := range warnings {
				p.warnf("%s", w)
			}
			return NFTSetNetOut(ctx, d, rs)
		}
	} else {
		plan, err := PlanAdd(cfg, ctr)
		if err != nil {
			return fail(err)
		}
		tables := p.Tables(cfg)
		stage = rollbackRules
		if err := tables.Apply(ctx, plan.Filter, plan.NAT, plan.Mangle); err != nil {
			return fail(fmt.Errorf("installing iptables rules: %w", err))
		}
		var tables6 Tables
		if plan.IPv6 != nil {
			tables6 = p.Tables6(cfg)
			if err := tables6.Apply(ctx, plan.IPv6.Filter, plan.IPv6.NAT, plan.IPv6.Mangle); err != nil {
				return fail(fmt.Errorf("installing ip6tables rules: %w", err))
			}
		}
		setNetOut = func() error {
			warn := func(msg string) { p.warnf("%s", msg) }
			if err := tables.Apply(ctx, plan.NetOut(cfg.RuntimeConfig.NetOutRules, warn)); err != nil {
				return err
			}
			if plan.IPv6 != nil {
				return tables6.Apply(ctx, plan.IPv6.NetOut(cfg.RuntimeConfig.NetOutRules, warn))
			}
			return nil
		}
	}

	if err := p.force(ctx, cfg, "/force-asgs-for-container?container="+url.QueryEscape(args.ContainerID), func(code int, body []byte) error {
		switch code {
		case http.StatusOK:
			// The agent installed the container's asg- chain.
			return nil
		case http.StatusMethodNotAllowed:
			// Dynamic ASGs are off: garden's netOut rules apply.
			if err := setNetOut(); err != nil {
				return fmt.Errorf("bulk insert: %w", err)
			}
			return nil
		}
		return fmt.Errorf("asg sync returned %v with message: %s", code, body)
	}); err != nil {
		return fail(err)
	}

	result.DNS.Nameservers = cfg.DNSServers
	v := cfg.CNIVersion
	if v == "" {
		v = "0.1.0" // what libcni assumes for a config without one
	}
	out, err := result.GetAsVersion(v)
	if err != nil {
		return fail(fmt.Errorf("converting to CNI version %s: %w", v, err))
	}
	return out, nil
}

// Del runs DEL. Like upstream, only a bad config and the policy agent's
// orphan-ASG cleanup fail it; every other problem goes to stderr.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) error {
	cfg, err := LoadConfig(args.StdinData)
	if err != nil {
		return err
	}
	stored, err := p.Store(cfg).Delete(ctx, args.ContainerID)
	if err != nil {
		p.warnf("store delete: %v", err)
	}
	if !cfg.NFTables() {
		if err := prepareLockFile(cfg); err != nil {
			return err
		}
	}
	if conf, typ, err := delegateParams(cfg.Delegate); err != nil {
		p.warnf("delegate delete: %v", err)
	} else if err := p.Delegate.Del(ctx, typ, conf); err != nil {
		p.warnf("delegate delete: %v", err)
	}
	ip, _ := netip.ParseAddr(stored.IP)
	p.cleanupRules(ctx, cfg, args.ContainerID, ip)

	return p.force(ctx, cfg, "/force-orphaned-asgs-cleanup?container="+url.QueryEscape(args.ContainerID), func(code int, body []byte) error {
		if code != http.StatusOK && code != http.StatusMethodNotAllowed {
			return fmt.Errorf("asg cleanup returned %v with message: %s", code, body)
		}
		return nil
	})
}

// Check does nothing: the conflist sets disableCheck, as upstream's.
func (p *Plugin) Check(_ context.Context, args *skel.CmdArgs) error {
	_, err := LoadConfig(args.StdinData)
	return err
}

// cleanupRules removes the container's rules from the configured backend,
// reporting problems on stderr.
func (p *Plugin) cleanupRules(ctx context.Context, cfg *Config, handle string, ip netip.Addr) {
	if cfg.NFTables() {
		d, err := p.NFT(cfg)
		if err == nil {
			if cfg.IPv6().Enabled() {
				err = NFTDelDualStack(ctx, d, handle, ip)
			} else {
				err = NFTDel(ctx, d, handle, ip)
			}
		}
		if err != nil {
			p.warnf("net out cleanup: %v", err)
		}
		return
	}
	noMasq, err := parseNoMasquerade(cfg.NoMasqueradeCIDRRange)
	if err != nil {
		p.warnf("removing IP masq: %v", err)
	}
	d := &DelPlanner{Handle: handle, IP: ip, NoMasquerade: noMasq, VTEPName: cfg.VTEPName}
	p.cleanupFamily(ctx, p.Tables(cfg), d)
	if v6 := cfg.IPv6(); v6.Enabled() {
		// The IPv6 twin: the container's derived address (recovered from
		// ip6tables' INPUT jump when the store lost the IPv4 one).
		d6 := &DelPlanner{Handle: handle, NoMasquerade: v6.Prefix(), VTEPName: cfg.VTEPName}
		if ip.Is4() {
			d6.IP = v6.Addr(ip)
		}
		p.cleanupFamily(ctx, p.Tables6(cfg), d6)
	}
}

// cleanupFamily runs a DEL plan against one family's tables.
func (p *Plugin) cleanupFamily(ctx context.Context, tables Tables, d *DelPlanner) {
	if _, err := tables.UpdateTables(ctx, DelTables, d.Plan); err != nil {
		p.warnf("net out cleanup: %v", err)
	}
	for _, c := range d.Kept {
		p.warnf("net out cleanup: chain %s is still referenced by a chain the policy agent owns; left empty for its orphan cleanup", c)
	}
}

type rollbackStage int

const (
	rollbackDelegate rollbackStage = iota
	rollbackStore
	rollbackRules // iptables or nftables, by enforcement_backend
)

// rollback undoes a failed ADD up to stage, best effort, reporting problems
// on stderr.
func (p *Plugin) rollback(ctx context.Context, cfg *Config, handle string, ip netip.Addr, delegateConf []byte, delegateType string, stage rollbackStage) {
	// The ADD may have failed because ctx ended; cleaning up still matters.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ForceTimeout)
	defer cancel()
	p.warnf("cleaning up from error")
	if stage >= rollbackRules {
		p.cleanupRules(ctx, cfg, handle, ip)
		// The agent may have built an asg- chain for the container.
		if err := p.force(ctx, cfg, "/force-orphaned-asgs-cleanup?container="+url.QueryEscape(handle), func(int, []byte) error { return nil }); err != nil {
			p.warnf("during cleanup: %v", err)
		}
	}
	if stage >= rollbackStore {
		if _, err := p.Store(cfg).Delete(ctx, handle); err != nil {
			p.warnf("during cleanup: store delete: %v", err)
		}
	}
	if err := p.Delegate.Del(ctx, delegateType, delegateConf); err != nil {
		p.warnf("during cleanup: delegate delete: %v", err)
	}
}

// force calls a policy agent force endpoint and hands the answer to check.
func (p *Plugin) force(ctx context.Context, cfg *Config, path string, check func(code int, body []byte) error) error {
	ctx, cancel := context.WithTimeout(ctx, ForceTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+cfg.PolicyAgentForcePollAddress+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return check(resp.StatusCode, body)
}

func delegateParams(conf map[string]any) ([]byte, string, error) {
	b, err := json.Marshal(conf)
	if err != nil {
		return nil, "", fmt.Errorf("serializing delegate netconf: %w", err)
	}
	t, ok := conf["type"].(string)
	if !ok || t == "" {
		return nil, "", errors.New("delegate config is missing type")
	}
	return b, t, nil
}

func containerIP(r *types100.Result) (netip.Addr, error) {
	for _, ipc := range r.IPs {
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok && a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, errors.New("delegate call: result has no IPv4 address")
}

// prepareLockFile rewrites the iptables lock file empty with mode 0600 and
// hands it to datastore_file_owner:group, as upstream does on every call
// (truncating keeps the inode, so current holders keep their flock).
func prepareLockFile(cfg *Config) error {
	if err := os.MkdirAll(filepath.Dir(cfg.IPTablesLockFile), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(cfg.IPTablesLockFile, nil, 0o600); err != nil {
		return err
	}
	if cfg.DatastoreFileOwner == "" || cfg.DatastoreFileGroup == "" {
		return nil
	}
	uid, gid, err := metadata.LookupOwner(cfg.DatastoreFileOwner, cfg.DatastoreFileGroup)
	if err != nil {
		return err
	}
	return os.Chown(cfg.IPTablesLockFile, uid, gid)
}

// InterfaceNamesForIPs returns, for each IP, the name of the link holding
// it, in the order given.
func InterfaceNamesForIPs(ips []string) ([]string, error) {
	addrs, err := netlinkx.AddrList(netlinkx.Host, nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses: %w", err)
	}
	var names []string
	for _, s := range ips {
		want, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("invalid underlay ip %q", s)
		}
		found := false
		for _, a := range addrs {
			got, ok := netip.AddrFromSlice(a.IP)
			if !ok || got.Unmap() != want.Unmap() {
				continue
			}
			link, err := netlink.LinkByIndex(a.LinkIndex)
			if err != nil {
				return nil, fmt.Errorf("finding link %d: %w", a.LinkIndex, err)
			}
			names = append(names, link.Attrs().Name)
			found = true
			break
		}
		if !found {
			return nil, fmt.Errorf("no interface found with IP %s", s)
		}
	}
	return names, nil
}
