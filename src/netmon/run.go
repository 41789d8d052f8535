// Package netmon is netmon: every poll interval it reports the cell's
// number of network interfaces, the number of iptables rules in the filter
// and nat tables, and the overlay device's byte and drop counters as
// dropsonde value metrics (origin "netmon"), and, when telemetry is on,
// writes a rule-count summary line to the telemetry log. It reads the
// kernel and changes nothing; the only file it owns is the telemetry log.
package netmon

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
)

// Origin is the dropsonde origin of netmon's metrics.
const Origin = "netmon"

// DefaultTelemetryLogFile is where upstream writes telemetry.
const DefaultTelemetryLogFile = "/var/vcap/sys/log/netmon/telemetry.log"

// Options adjust the daemon for tests; the zero value is production.
type Options struct {
	// Sender receives the metrics; nil means one for cfg.MetronAddress.
	Sender *metrics.Sender
	// Rules counts iptables rules; nil means the iptables binaries of
	// cfg.IPTablesFlavor under cfg.IPTablesLockFile.
	Rules RuleCounter
	// Interfaces counts network interfaces; nil means CountInterfaces.
	Interfaces func() (int, error)
	// NFT counts netman's nftables table with enforcement_backend:
	// nftables; nil means NFTTable (netlink).
	NFT NFTCounter
	// SysClassNet is the sysfs directory of interface counters; "" means
	// DefaultSysClassNet.
	SysClassNet string
	// TelemetryLogFile is the telemetry log; "" means
	// DefaultTelemetryLogFile.
	TelemetryLogFile string
	// PollInterval and TelemetryInterval, when positive, replace the
	// config's whole seconds.
	PollInterval, TelemetryInterval time.Duration
	// Now stamps telemetry lines; nil means time.Now.
	Now func() time.Time
}

// Run is netmon: it runs the metric poller and, when telemetry is enabled,
// the telemetry poller until ctx is done (nil) or start-up fails. Each
// poller first acts one interval after start, as upstream.
func Run(ctx context.Context, logger lager.Logger, cfg Config, opts Options) error {
	logger.Info("parsed-config", lager.Data{"config": cfg})

	rules := opts.Rules
	if rules == nil {
		flavor, err := iptables.ParseFlavor(cfg.IPTablesFlavor)
		if err != nil {
			return err
		}
		driver := iptables.New(iptables.Config{Flavor: flavor, LockFile: cfg.IPTablesLockFile})
		// Fail at start, as upstream, rather than on every poll.
		_, _, save := driver.Binaries()
		if _, err := exec.LookPath(save); err != nil {
			return fmt.Errorf("finding iptables: %w", err)
		}
		rules = IPTablesRules{Tables: driver}
	}

	sender := opts.Sender
	if sender == nil {
		var err error
		if sender, err = metrics.NewSenderAt(logger, Origin, cfg.MetronAddress); err != nil {
			return fmt.Errorf("initializing metrics: %w", err)
		}
		defer sender.Close()
	}

	var nftc NFTCounter
	if cfg.NFTables() {
		if nftc = opts.NFT; nftc == nil {
			nftc = NFTTable{}
		}
	}
	agg := &Aggregator{}
	mon := &Monitor{
		Logger:     logger,
		Sender:     sender,
		Rules:      rules,
		NFT:        nftc,
		Interfaces: opts.Interfaces,
		Stats:      Stats{Dir: opts.SysClassNet, Interface: cfg.InterfaceName},
		Aggregate:  agg,
	}
	pollInterval := cfg.pollInterval()
	if opts.PollInterval > 0 {
		pollInterval = opts.PollInterval
	}
	members := []lifecycle.Member{{Name: "metric_poller", Runner: every(pollInterval, mon.Measure)}}

	if cfg.TelemetryEnabled {
		path := opts.TelemetryLogFile
		if path == "" {
			path = DefaultTelemetryLogFile
		}
		f, err := openTelemetryLog(path)
		if err != nil {
			return fmt.Errorf("creating telemetry log: %w", err)
		}
		defer f.Close()
		out := lager.NewLogger(TelemetrySource)
		out.RegisterSink(lager.NewWriterSink(f, lager.INFO))
		interval := cfg.telemetryInterval()
		if opts.TelemetryInterval > 0 {
			interval = opts.TelemetryInterval
		}
		tele := &Telemetry{Logger: logger, Out: out, Rules: rules, Aggregate: agg, Interval: interval, Now: opts.Now}
		members = append(members, lifecycle.Member{Name: "telemetry_poller", Runner: every(interval, tele.Report)})
	}
	// Upstream logs "starting" once the pollers run.
	members = append(members, lifecycle.Member{Name: "starting", Runner: lifecycle.OnReady(func() { logger.Info("starting") })})
	return lifecycle.RunContext(ctx, logger, members...)
}

// openTelemetryLog opens the telemetry log for appending. Upstream
// truncates it at every start; appending keeps the lines of earlier runs
// and is safe under logrotate's copytruncate.
func openTelemetryLog(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// every returns a runner that calls fn each time interval has passed since
// the previous call returned, the first time one interval after start (not
// at once, unlike lifecycle.Poller), as upstream's pollers.
func every(interval time.Duration, fn func(context.Context)) ifrit.Runner {
	return lifecycle.Loop(func(ctx context.Context) error {
		if interval <= 0 {
			return fmt.Errorf("interval must be positive, got %s", interval)
		}
		t := time.NewTimer(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
			fn(ctx)
			t.Reset(interval)
		}
	})
}
