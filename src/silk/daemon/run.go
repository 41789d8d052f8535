package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/lease"
)

// Options adjust where the daemon acts; the zero value is production.
type Options struct {
	// NetNSPath is the network namespace that holds the underlay and the
	// VTEP (e.g. /run/netns/cell1); "" means the process's own. Only the
	// kernel work happens there: the controller client and the local
	// servers stay in the process's namespace, which lets a test drive a
	// cell namespace against a controller on its own 127.0.0.1.
	NetNSPath string
	// Sender receives the metrics; nil means one for cfg.MetronPort.
	Sender *metrics.Sender
	// GCThresh3Path overrides GCThresh3Path; "-" disables the check.
	GCThresh3Path string
	// JitterFraction of the poll interval is added at random to every wait
	// between polls; 0 means DefaultJitterFraction, negative means none.
	JitterFraction float64
}

// DefaultJitterFraction spreads cells' polls over up to 10% of the interval
// (3 s at the default 30 s) so a fleet restarted together does not poll the
// controller in lockstep.
const DefaultJitterFraction = 0.1

// Uptime is emitted every 30 s, as upstream.
const uptimeInterval = 30 * time.Second

// NetworkInfo is the body of the local endpoint silk-cni reads: upstream's
// two fields, and on a dual-stack cell the IPv6 overlay network (absent on
// an IPv4-only cell), from which silk-cni derives each container's IPv6
// address.
type NetworkInfo struct {
	OverlaySubnet      string `json:"overlay_subnet"`
	MTU                int    `json:"mtu"`
	IPv6OverlayNetwork string `json:"ipv6_overlay_network,omitempty"`
}

// Run is silk-daemon: the start-up sequence, then, in order, the network-info
// server, the VXLAN poller, the debug server and the metrics emitter, until
// ctx is done or one of them fails. Start-up errors carry upstream's texts,
// e.g. "renew subnet lease with containers: 3".
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config, opts Options) error {
	logger.Info("starting")
	nl, err := OpenSystem(opts.NetNSPath)
	if err != nil {
		return err
	}
	defer nl.Close()
	client, err := NewControllerClient(cfg, cfg.clientTimeout())
	if err != nil {
		return err
	}
	sender := opts.Sender
	if sender == nil {
		if sender, err = metrics.NewSender(logger, "silk-daemon", cfg.MetronPort); err != nil {
			return fmt.Errorf("initializing metrics: %w", err)
		}
		defer sender.Close()
	}

	d, err := Setup(ctx, logger, cfg, nl, client, sender, opts)
	if err != nil {
		return err
	}
	return lifecycle.RunContext(ctx, logger,
		lifecycle.Member{Name: "server", Runner: lifecycle.HTTPServer(logger.Session("server"), localAddr(cfg.HealthCheckPort), NetworkInfoHandler(d.Info), nil)},
		lifecycle.Member{Name: "vxlan-poller", Runner: d.Poller()},
		lifecycle.Member{Name: "debug-server", Runner: lifecycle.HTTPServer(logger.Session("debug-server"), localAddr(cfg.DebugServerPort), lifecycle.DebugHandler(sink, sender.Registry()), nil)},
		lifecycle.Member{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, uptimeInterval)},
	)
}

// Host is the kernel silk-daemon works on: the links that hold the VTEP
// and the tables the converger keeps (*System; FakeSystem in netman-fleet).
type Host interface {
	Links
	Kernel
}

// DaemonController is the silk-controller client start-up and the polls use.
type DaemonController interface {
	Controller
	LeaseClient
}

// Daemon is silk-daemon after start-up: its lease, the network-info body
// silk-cni reads, and the poll cycle.
type Daemon struct {
	Lease lease.Lease
	Info  []byte
	Cycle *Cycle

	logger           lager.Logger
	interval, jitter time.Duration
}

// Setup is the daemon's start-up on host: the lease (Start), the VTEP read
// back and its offloads checked, and the poll cycle that renews the lease
// and converges the other cells' routes. Run serves it; netman-fleet runs
// it on a FakeSystem.
func Setup(ctx context.Context, logger lager.Logger, cfg Config, host Host, client DaemonController, sender *metrics.Sender, opts Options) (*Daemon, error) {
	l, err := Start(ctx, logger, cfg, host, client)
	if err != nil {
		return nil, err
	}
	vtep, err := ReadVTEP(host, cfg.VTEPName)
	if err != nil {
		return nil, fmt.Errorf("find local VTEP: %w", err)
	}
	// A VTEP kept from before (an older release, upstream's) gets the
	// same offloads as a new one.
	offloads := &offloadCheck{logger: logger, links: host, name: cfg.VTEPName, want: vtepOffloads(cfg)}
	if err := offloads.check(); err != nil {
		return nil, err
	}
	v6 := cfg.IPv6()
	if v6.Enabled() {
		addr, err := address6(v6, l.OverlaySubnet)
		if err != nil {
			return nil, err
		}
		if err := EnsureAddress6(host, cfg.VTEPName, addr); err != nil {
			return nil, fmt.Errorf("set up vtep ipv6: %w", err)
		}
	}
	info, err := json.Marshal(NetworkInfo{OverlaySubnet: l.OverlaySubnet, MTU: vtep.MTU, IPv6OverlayNetwork: v6.String()})
	if err != nil {
		return nil, fmt.Errorf("marshal network info: %w", err)
	}
	local, err := netip.ParsePrefix(l.OverlaySubnet)
	if err != nil {
		return nil, fmt.Errorf("parse local subnet CIDR: %w", err)
	}

	conv := &Converger{
		Kernel:    host,
		LinkIndex: vtep.Index,
		Planner:   Planner{Local: local.Masked(), Overlay: cfg.Overlay(), OnLink: cfg.SingleIPOnly, IPv6: v6},
	}
	cycle := NewCycle(logger, client, conv, l, sender, cfg.partitionTolerance())
	cycle.gc = newGCThreshCheck(logger, opts.gcPath())
	cycle.offloads = offloads

	interval := cfg.pollInterval()
	return &Daemon{
		Lease: l, Info: info, Cycle: cycle, logger: logger,
		interval: interval, jitter: time.Duration(float64(interval) * opts.jitterFraction()),
	}, nil
}

// Poller is the vxlan-poller member: the cycle at once, then every
// lease_poll_interval_seconds plus jitter.
func (d *Daemon) Poller() ifrit.Runner {
	return vxlanPoller(d.logger, d.interval, d.jitter, d.Cycle.Run)
}

// vxlanPoller is upstream's "vxlan-poller" member: a cycle at once, then
// one every interval (plus jitter). A failed cycle is logged as upstream's
// poller logs it, "poll-cycle" with the error on the daemon's root logger
// (no session); a Fatal one ends the daemon.
func vxlanPoller(logger lager.Logger, interval, jitter time.Duration, cycle func(context.Context) error) ifrit.Runner {
	return lifecycle.Poller(logger, "vxlan-poller", interval, jitter, cycle)
}

// NetworkInfoHandler answers every method and path with the fixed body.
func NetworkInfoHandler(body []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body) // a client gone away is not worth a log line
	})
}

// Controller is the part of the silk-controller client start-up uses.
type Controller interface {
	Acquire(ctx context.Context, underlayIP string, singleOverlayIP bool) (lease.Lease, error)
	Renew(ctx context.Context, l lease.Lease) error
}

// Start is the start-up sequence. The daemon keeps no lease file: the lease
// is read back from the VTEP (its MAC and first IPv4 address). With no usable
// VTEP it acquires a lease and creates one. A VTEP whose address lies outside
// the overlay, or whose lease the controller will not renew, is replaced by a
// fresh lease — unless silk-cni's store records containers, which would lose
// their network, in which case start-up fails.
func Start(ctx context.Context, logger lager.Logger, cfg Config, nl Links, client Controller) (lease.Lease, error) {
	state, err := ReadVTEP(nl, cfg.VTEPName)
	if err != nil {
		logger.Info("no-local-lease", lager.Data{"vtep": cfg.VTEPName, "reason": err.Error()})
		if errors.Is(err, errNoAddress) {
			// A creation cut short leaves a device that would make the
			// create below fail until the next teardown.
			if err := deleteIfVXLAN(nl, cfg.VTEPName); err != nil {
				return lease.Lease{}, fmt.Errorf("delete vtep: %w", err)
			}
		}
		return acquire(ctx, logger, cfg, nl, client)
	}

	l := lease.Lease{
		UnderlayIP:          cfg.UnderlayIP,
		OverlaySubnet:       state.IP.String() + "/" + strconv.Itoa(cfg.SubnetPrefixLength),
		OverlayHardwareAddr: state.HardwareAddr.String(),
	}
	subnet := netip.PrefixFrom(state.IP, cfg.SubnetPrefixLength).Masked()
	if !cfg.Overlay().Contains(subnet.Addr()) {
		logger.Error("network-contains-lease", errors.New("discovered lease is not in overlay network"), lager.Data{
			"lease": l, "network": cfg.Overlay().String(),
		})
		return replaceLease(ctx, logger, cfg, nl, client, "discovered lease is not in overlay network and has containers")
	}

	if err := client.Renew(ctx, l); err != nil {
		logger.Error("renew-lease", err, lager.Data{"lease": l})
		return replaceLease(ctx, logger, cfg, nl, client, "renew subnet lease with containers")
	}
	logger.Info("renewed-lease", lager.Data{"lease": l})
	return l, nil
}

func acquire(ctx context.Context, logger lager.Logger, cfg Config, nl Links, client Controller) (lease.Lease, error) {
	l, err := client.Acquire(ctx, cfg.UnderlayIP, cfg.SingleIPOnly)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("acquire subnet lease: %w", err)
	}
	logger.Info("acquired-lease", lager.Data{"lease": l})
	spec, err := vtepSpec(cfg, l)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("create vtep config: %w", err)
	}
	if err := CreateVTEP(nl, spec); err != nil {
		return lease.Lease{}, fmt.Errorf("create vtep: %w", err)
	}
	return l, nil
}

// replaceLease drops the VTEP and its lease for a new one, but only while
// no container uses it (their addresses would change under them);
// withContainers words the refusal.
func replaceLease(ctx context.Context, logger lager.Logger, cfg Config, nl Links, client Controller, withContainers string) (lease.Lease, error) {
	n, err := countContainers(cfg.Datastore)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("read datastore: %w", err)
	}
	if n != 0 {
		return lease.Lease{}, fmt.Errorf("%s: %d", withContainers, n)
	}
	return deleteAndAcquire(ctx, logger, cfg, nl, client)
}

func deleteAndAcquire(ctx context.Context, logger lager.Logger, cfg Config, nl Links, client Controller) (lease.Lease, error) {
	if err := DeleteVTEP(nl, cfg.VTEPName); err != nil {
		return lease.Lease{}, fmt.Errorf("delete vtep: %w", err)
	}
	return acquire(ctx, logger, cfg, nl, client)
}

// deleteIfVXLAN removes a leftover VXLAN device of that name; a device of
// another kind is not silk-daemon's to delete.
func deleteIfVXLAN(nl Links, name string) error {
	link, err := nl.LinkByName(name)
	if err != nil {
		return nil
	}
	if link.Type() != "vxlan" {
		return nil
	}
	return nl.LinkDel(link)
}

// NewControllerClient builds the mTLS client for connectivity_server_url;
// timeout 0 means none (silk-teardown's release).
func NewControllerClient(cfg Config, timeout time.Duration) (*controller.Client, error) {
	tlsConfig, err := mtls.ClientConfig(cfg.ClientCertFile, cfg.ClientKeyFile, cfg.CACertFile)
	if err != nil {
		return nil, fmt.Errorf("create tls config: %w", err)
	}
	httpClient := &http.Client{
		Transport: &http.Transport{TLSClientConfig: tlsConfig, IdleConnTimeout: 90 * time.Second},
		Timeout:   timeout,
	}
	return controller.NewClient(httpClient, cfg.ConnectivityServerURL), nil
}

func (o Options) gcPath() string {
	switch o.GCThresh3Path {
	case "":
		return GCThresh3Path
	case "-":
		return ""
	}
	return o.GCThresh3Path
}

func (o Options) jitterFraction() float64 {
	switch {
	case o.JitterFraction == 0:
		return DefaultJitterFraction
	case o.JitterFraction < 0:
		return 0
	}
	return o.JitterFraction
}

func localAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
