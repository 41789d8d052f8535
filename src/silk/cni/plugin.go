// Package cni is silk-cni, the CNI plugin cni-wrapper-plugin delegates to:
// it gives a container an address from the cell's overlay lease (host-local
// state under <dataDir>/ipam/<name>), a veth pair (s-AAABBBCCCDDD on the
// host, CNI_IFNAME inside) with /32 point-to-point addressing through
// 169.254.0.1, static neighbours both ways, and an entry in silk-cni's own
// container store. It owns exactly those objects: the s-… links, the
// reservation files of its network, and its store file.
package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/utils"
	"github.com/containernetworking/plugins/pkg/ns"
)

// Plugin runs the CNI commands. The zero value is the production plugin:
// the host is the namespace the process runs in and the daemon is on
// 127.0.0.1.
type Plugin struct {
	Logger lager.Logger
	// HostNS is where the s-… ends live; nil means the calling thread's
	// namespace. Tests point it at a namespace standing in for the cell.
	HostNS ns.NetNS
	// DaemonHost is where silk-daemon listens ("" = 127.0.0.1).
	DaemonHost    string
	DaemonTimeout time.Duration
	HTTPClient    *http.Client
	// Stdout receives results (nil = os.Stdout).
	Stdout io.Writer
}

// Funcs are the skel callbacks: results are printed, errors returned for
// skel to print as CNI error JSON.
func (p *Plugin) Funcs() skel.CNIFuncs {
	ctx := context.Background()
	return skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			res, err := p.Add(ctx, args)
			if err != nil {
				return err
			}
			return res.PrintTo(p.stdout())
		},
		Del:    func(args *skel.CmdArgs) error { return p.Del(ctx, args) },
		Check:  func(args *skel.CmdArgs) error { return p.Check(ctx, args) },
		GC:     func(args *skel.CmdArgs) error { return p.GC(ctx, args) },
		Status: func(args *skel.CmdArgs) error { return p.Status(ctx, args) },
	}
}

func (p *Plugin) stdout() io.Writer {
	if p.Stdout != nil {
		return p.Stdout
	}
	return os.Stdout
}

func (p *Plugin) logger() lager.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return lager.NewLogger("silk-cni")
}

// hostNS returns the host namespace and a release func.
func (p *Plugin) hostNS() (ns.NetNS, func(), error) {
	if p.HostNS != nil {
		return p.HostNS, func() {}, nil
	}
	h, err := ns.GetCurrentNS()
	if err != nil {
		return nil, nil, err
	}
	return h, func() { _ = h.Close() }, nil
}

// stepError is upstream's error shape: code 100, the failing step as msg,
// the cause as details.
func stepError(msg string, err error) *types.Error {
	return &types.Error{Code: 100, Msg: msg, Details: err.Error()}
}

func argsError(msg string) *types.Error {
	return types.NewError(types.ErrInvalidEnvironmentVariables, msg, "")
}

// logFailure records a command's error once, at the boundary, under the
// name upstream logs for the failed step ("create-veth-pair-failed", ...);
// errors of no step are "<action>-failed".
func logFailure(logger lager.Logger, action string, err *error) {
	if *err == nil {
		return
	}
	msg := action + "-failed"
	var te *types.Error
	if errors.As(*err, &te) && stepFailures[te.Msg] != "" {
		msg = stepFailures[te.Msg]
	}
	logger.Error(msg, *err)
}

// stepFailures maps a step's CNI error message to upstream's log message.
var stepFailures = map[string]string{
	"discover network info":    "get-network-info-failed",
	"generate ipam config":     "generate-ipam-config-failed",
	"run ipam plugin":          "host-local-ipam-failed",
	"create config":            "create-config-failed",
	"create veth pair":         "create-veth-pair-failed",
	"set up host":              "setup-host-failed",
	"set up container":         "setup-container-failed",
	"convert result":           "convert-ipam-result-failed",
	"write container metadata": "write-container-metadata-failed",
	"teardown failed":          "teardown-failed",
}

// Add creates the container's network; on any failure it removes what it
// created (veth, reservation), so a failed ADD leaves nothing behind.
func (p *Plugin) Add(ctx context.Context, args *skel.CmdArgs) (_ types.Result, err error) {
	logger := p.logger().Session("plugin-add", lager.Data{"container-id": args.ContainerID, "netns": args.Netns, "ifname": args.IfName})
	defer logFailure(logger, "add", &err)

	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return nil, err
	}
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if e := utils.ValidateContainerID(args.ContainerID); e != nil {
		return nil, e
	}
	if e := utils.ValidateInterfaceName(args.IfName); e != nil {
		return nil, stepError("create config", e)
	}
	if args.Netns == "" {
		return nil, argsError("required env variables [CNI_NETNS] missing")
	}
	containerNS, err := ns.GetNS(args.Netns)
	if err != nil {
		return nil, stepError("create config", fmt.Errorf("getting container namespace: %w", err))
	}
	defer containerNS.Close()
	hostNS, closeHost, err := p.hostNS()
	if err != nil {
		return nil, stepError("create config", fmt.Errorf("getting host namespace: %w", err))
	}
	defer closeHost()

	info, err := p.discover(ctx, conf)
	if err != nil {
		return nil, stepError("discover network info", err)
	}
	logger.Debug("network-info", lager.Data{"overlay_subnet": info.OverlaySubnet, "mtu": info.MTU})
	rs, err := rangeSet(info.OverlaySubnet)
	if err != nil {
		return nil, stepError("generate ipam config", err)
	}
	pool := newIPAM(conf)
	ip, err := pool.allocate(rs, args.ContainerID, args.IfName)
	if err != nil {
		return nil, stepError("run ipam plugin", err)
	}

	created := false
	var names Names
	defer func() {
		if err == nil {
			return
		}
		// Roll back in reverse order; the veth goes first so the address
		// is never free while a device still claims it.
		if created {
			if _, rbErr := deleteLink(hostNS, names.HostDevice); rbErr != nil {
				logger.Error("rollback-delete-veth-failed", rbErr)
			}
		}
		if rbErr := pool.release(args.ContainerID, args.IfName); rbErr != nil {
			logger.Error("rollback-release-ip-failed", rbErr)
		}
	}()

	names, err = NamesFor(ip)
	if err != nil {
		return nil, stepError("create config", err)
	}
	if err := createVeth(hostNS, containerNS, names, info.MTU); err != nil {
		return nil, stepError("create veth pair", err)
	}
	created = true
	var ip6 net.IP
	if v6 := info.IPv6(); v6.Enabled() {
		ip6 = v6.Addr(netip.AddrFrom4([4]byte(names.ContainerIP.To4()))).AsSlice()
	}
	if err := setupHost(hostNS, names, ip6); err != nil {
		return nil, stepError("set up host", err)
	}
	if err := setupContainer(containerNS, names, args.IfName, ip6); err != nil {
		return nil, stepError("set up container", err)
	}
	res, err := Result(names, args.IfName, args.Netns, ip6).GetAsVersion(conf.CNIVersion)
	if err != nil {
		return nil, stepError("convert result", err)
	}
	// Last, so that a failed ADD never leaves an entry behind. The handle
	// is the netns file's basename, not CNI_CONTAINERID: that is what
	// silk-daemon and upstream tooling expect.
	if err := (Store{Path: conf.Datastore}).Add(filepath.Base(args.Netns), ip); err != nil {
		return nil, stepError("write container metadata", err)
	}
	added := lager.Data{"ip": ip.String(), "host-device": names.HostDevice, "mtu": info.MTU}
	if ip6 != nil {
		added["ipv6"] = ip6.String()
	}
	logger.Info("added", added)
	return res, nil
}

// Result is ADD's result in the current CNI types: host end first, then
// the container end; one /32 with gateway 169.254.0.1; a default route.
// With ip6 (a dual-stack cell) also the container's IPv6 /128 with gateway
// fe80::1 and an IPv6 default route.
func Result(n Names, ifName, netnsPath string, ip6 net.IP) *current.Result {
	container := 1
	res := &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{
			{Name: n.HostDevice, Mac: n.HostMAC.String()},
			{Name: ifName, Mac: n.ContainerMAC.String(), Sandbox: netnsPath},
		},
		IPs: []*current.IPConfig{{
			Interface: &container,
			Address:   *slash32(n.ContainerIP),
			Gateway:   HostIP,
		}},
		Routes: []*types.Route{{
			Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
			GW:  HostIP,
		}},
	}
	if ip6 != nil {
		res.IPs = append(res.IPs, &current.IPConfig{Interface: &container, Address: *slash128(ip6), Gateway: HostIP6})
		res.Routes = append(res.Routes, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: HostIP6})
	}
	return res
}

// Del tears the container's network down. It is idempotent: a second DEL,
// or a DEL for a container silk never saw, succeeds. It needs neither the
// daemon nor the container namespace.
func (p *Plugin) Del(ctx context.Context, args *skel.CmdArgs) (err error) {
	logger := p.logger().Session("plugin-del", lager.Data{"container-id": args.ContainerID, "netns": args.Netns, "ifname": args.IfName})
	defer logFailure(logger, "del", &err)

	conf, err := ParseNetConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.Name == "" {
		return types.NewError(types.ErrInvalidNetworkConfig, "missing network name", "")
	}
	hostNS, closeHost, err := p.hostNS()
	if err != nil {
		return stepError("teardown failed", fmt.Errorf("getting host namespace: %w", err))
	}
	defer closeHost()

	var pool ipam
	var ips []net.IP
	if conf.DataDir != "" {
		pool = newIPAM(conf)
		ips = pool.lookup(args.ContainerID, args.IfName)
	}

	if args.Netns != "" && args.IfName != "" {
		containerNS, nsErr := ns.GetNS(args.Netns)
		if nsErr != nil {
			// The namespace is gone, and with it the container end and
			// therefore the whole pair. Clean up the rest regardless.
			logger.Error("open-netns-failed", nsErr) // upstream's line and level
		} else {
			_, delErr := deleteLinkIf(containerNS, args.IfName, isSilkContainerEnd)
			containerNS.Close()
			if errors.Is(delErr, errNotOurs) {
				// Another plugin's interface under this name: not ours to
				// remove (upstream would delete it).
				logger.Info("interface-not-created-by-silk", lager.Data{"ifname": args.IfName})
			} else if delErr != nil {
				// Keep the reservation: the address is still in use.
				return stepError("teardown failed", delErr)
			}
		}
	}
	// Host ends left behind (namespace unmounted while still alive, or a
	// container end renamed away) would block the address's next ADD.
	for _, ip := range ips {
		if dev := HostDeviceName(ip); dev != "" {
			if _, delErr := deleteLink(hostNS, dev); delErr != nil {
				logger.Error("delete-host-veth-failed", delErr, lager.Data{"device": dev})
			}
		}
	}
	if conf.DataDir != "" {
		if relErr := pool.release(args.ContainerID, args.IfName); relErr != nil {
			logger.Error("host-local-ipam-failed", relErr) // upstream's name for the IPAM release
		}
	}
	if conf.Datastore != "" {
		store := Store{Path: conf.Datastore}
		var stErr error
		if args.Netns != "" {
			stErr = store.Delete(filepath.Base(args.Netns))
		} else if len(ips) > 0 {
			_, stErr = store.DeleteIf(func(c Container) bool { return containsIP(ips, net.ParseIP(c.IP)) })
		}
		if stErr != nil {
			logger.Error("delete-from-container-metadata-failed", stErr)
		}
	}
	logger.Info("deleted", lager.Data{"ips": ips})
	return nil
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, i := range ips {
		if i.Equal(ip) {
			return true
		}
	}
	return false
}
