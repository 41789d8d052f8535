package agent

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/observe"
)

const uptimeInterval = 30 * time.Second

// Options adjust the agent for tests; the zero value is production.
type Options struct {
	Sender *metrics.Sender
	// DriftCheck replaces driftCheckInterval (negative: never).
	DriftCheck time.Duration
}

// Run is vxlan-policy-agent: upstream's start-up checks, then the metrics
// emitter, the policy watcher and poller, the debug server, the force
// server and, when enabled, the ASG watcher and poller, until ctx is done
// or one of them fails.
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config, opts Options) error {
	if _, err := os.Stat(filepath.Dir(cfg.CNIDatastorePath)); err != nil {
		return &ActionError{Action: "datastore-directory-stat", Err: err}
	}
	ifaces, err := underlayInterfaces(cfg.UnderlayIPs)
	if err != nil {
		return fmt.Errorf("looking up interface names: %w", err)
	}
	tlsConfig, err := mtls.ClientConfig(cfg.ClientCertFile, cfg.ClientKeyFile, cfg.CACertFile)
	if err != nil {
		return &ActionError{Action: "mutual tls config", Err: err}
	}
	client := NewClient(cfg.PolicyServerURL, tlsConfig, cfg.clientTimeout())
	defer client.CloseIdleConnections()
	checkCtx, cancel := context.WithTimeout(ctx, cfg.clientTimeout())
	_, err = client.Policies(checkCtx)
	cancel()
	if err != nil {
		return &ActionError{Action: "policy-client-get-policies", Err: fmt.Errorf("policy-server-internal unreachable: %w", err)}
	}

	sender := opts.Sender
	if sender == nil {
		port, _ := cfg.metronPort()
		if sender, err = metrics.NewSender(logger, "vxlan-policy-agent", port); err != nil {
			return fmt.Errorf("initializing metrics: %w", err)
		}
		defer sender.Close()
	}
	flavor, _ := iptables.ParseFlavor(cfg.IPTablesFlavor)
	driver := iptables.New(iptables.Config{Flavor: flavor, LockFile: cfg.IPTablesLockFile})
	var driver6 *iptables.Driver // dual stack: the c2c chains' IPv6 twin
	if cfg.ipv6().Enabled() {
		driver6 = cfg.ip6tablesDriver()
	}
	store := metadata.New(cfg.CNIDatastorePath)

	// The backend: its c2c enforcer and ASG syncer, and the removal of
	// what the other backend left (a cell switched while drained).
	backend := cfg.backend()
	var enforcer c2cBackend
	var nftDriver nft.Driver
	if backend == BackendNFTables {
		k, err := nft.New()
		if err != nil {
			return &ActionError{Action: "nftables", Err: err}
		}
		nftDriver = k
		enforcer = newNFTC2C(k)
		removed, kept, err := removeIPTablesChains(ctx, driver)
		if err != nil {
			return err
		}
		if len(removed) > 0 {
			logger.Info("removed-iptables-chains", lager.Data{"backend": backend, "chains": removed, "still-referenced": kept})
		}
		if driver6 != nil {
			removed, kept, err := removeIPTablesChains(ctx, driver6)
			if err != nil {
				return fmt.Errorf("ip6tables: %w", err)
			}
			if len(removed) > 0 {
				logger.Info("removed-ip6tables-chains", lager.Data{"backend": backend, "chains": removed, "still-referenced": kept})
			}
		}
	} else {
		ipt := iptablesC2C{enforcer: c2c.NewEnforcer(driver), perDst: cfg.IPTablesPerDestinationChains}
		if driver6 != nil {
			ipt.enforcer6 = c2c.NewEnforcer(driver6)
		}
		enforcer = ipt
		if k, err := nft.New(); err == nil {
			deleted, err := deleteNFTTable(ctx, k)
			if err != nil {
				return err
			}
			if deleted {
				logger.Info("deleted-nftables-table", lager.Data{"backend": backend, "table": string(nft.Family) + " " + nft.TableName})
			}
		}
	}
	logger.Info("enforcement-backend", lager.Data{"backend": backend})
	if err := removeAppMetrics(ctx, cfg.EnableAppMetrics, backend, driver, nftDriver); err != nil {
		return err
	}
	var apps *appMetrics
	if cfg.EnableAppMetrics {
		apps = newAppMetrics(logger.Session("app-metrics"), store, appMetricsPlane(backend, driver), cfg.AppMetricsMaxSeries)
	}

	policies := newPolicyCycle(logger, sender, store, client, enforcer, cfg.c2cRules(), cfg.longPoll())
	if opts.DriftCheck != 0 {
		policies.driftEvery = opts.DriftCheck
	}
	var asgs *asgCycle
	if cfg.EnableASGSyncing {
		cache := &groupCache{src: client}
		var syncer ASG
		if backend == BackendNFTables {
			s, err := newNFTASGSyncer(logger.Session("asg"), cfg, nftDriver, cache, sender)
			if err != nil {
				return err
			}
			s.DriftEvery = policies.driftEvery
			syncer = s
		} else {
			driver6 := iptables.New(iptables.Config{Flavor: flavor, Family: iptables.IPv6, LockFile: cfg.IPTablesLockFile})
			s, err := newASGSyncer(logger.Session("asg"), cfg, driver, driver6, cache, sender)
			if err != nil {
				return err
			}
			syncer = s
		}
		asgs = newASGCycle(logger, sender, store, syncer, cache, client, cfg.longPoll())
	}
	logger.Info("underlay-interfaces", lager.Data{"names": ifaces})

	debug := http.NewServeMux()
	debug.Handle("/iptables-c2c-logging", c2cLoggingHandler(policies))
	if apps != nil {
		debug.Handle("/metrics", metricsHandler(sender.Registry(), apps))
	}
	debug.Handle(observe.PathEnforced, enforcedHandler(policies, string(backend)))
	debug.Handle(observe.PathContainers, containersHandler(policies, store, cfg.UnderlayIPs))
	if cfg.FlowLogFile != "" {
		debug.Handle(observe.PathFlows, observe.FlowsHandler(cfg.FlowLogFile))
	}
	debug.Handle("/", lifecycle.DebugHandler(sink, sender.Registry()))

	// Up to a tenth of jitter keeps the cells from polling in lockstep.
	interval := cfg.pollInterval()
	members := []lifecycle.Member{
		{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, uptimeInterval)},
	}
	members = append(members, policies.members(interval, interval/10)...)
	members = append(members,
		lifecycle.Member{Name: "debug-server", Runner: lifecycle.HTTPServer(logger.Session("debug-server"), cfg.debugAddr(), debug, nil)},
		lifecycle.Member{Name: "force-policy-poll-cycle-server", Runner: lifecycle.HTTPServer(logger.Session("force-server"), cfg.forceAddr(), forceHandler(logger, policies, asgs), nil)},
	)
	if apps != nil {
		members = append(members, apps.members(interval, uptimeInterval, sender)...)
	}
	if asgs != nil {
		asgInterval := cfg.asgPollInterval()
		members = append(members, asgs.members(asgInterval, asgInterval/10)...)
	}
	// Upstream logs "starting" once every member is up.
	members = append(members, lifecycle.Member{Name: "starting", Runner: lifecycle.OnReady(func() { logger.Info("starting") })})
	if err := lifecycle.RunContext(ctx, logger, members...); err != nil {
		return &ActionError{Action: "ifrit monitor", Err: err}
	}
	return nil
}

// underlayInterfaces finds the interface holding each underlay IP.
func underlayInterfaces(ips []string) ([]string, error) {
	if len(ips) == 0 {
		return nil, nil
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range ips {
		want, err := netip.ParseAddr(s)
		if err != nil {
			return nil, err
		}
		found := ""
		for _, ifc := range ifs {
			addrs, _ := ifc.Addrs()
			for _, ad := range addrs {
				if p, err := netip.ParsePrefix(ad.String()); err == nil && p.Addr() == want {
					found = ifc.Name
				}
			}
		}
		if found == "" {
			return nil, fmt.Errorf("no interface has address %s", s)
		}
		names = append(names, found)
	}
	return names, nil
}
