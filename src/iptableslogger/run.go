// Package iptableslogger is iptables-logger: it follows the kernel log (a
// syslog file such as /var/log/kern.log, or /dev/kmsg), picks out the lines
// netman's iptables LOG rules write (prefixes OK_… and DENY_…), matches the
// packet's container address to its app through the container metadata
// store, and appends one lager JSON line per packet to the augmented log
// (/var/vcap/sys/log/iptables-logger/iptables.log), exactly as upstream.
// It owns that output file and nothing in the kernel.
package iptableslogger

import (
	"context"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
)

// Intervals, as upstream.
const (
	uptimeInterval      = 30 * time.Second
	outputCheckInterval = time.Second
	// restartInterval is the pause before reading again after a read error.
	restartInterval = time.Second
)

// Options adjust the daemon for tests; the zero value is production.
type Options struct {
	// Sender receives the metrics; nil means one for cfg.MetronAddress.
	Sender *metrics.Sender
	// Now is the clock of the output timestamps; nil means time.Now.
	Now func() time.Time
	// PollInterval is how often a caught-up file tailer looks for more;
	// 0 means DefaultPollInterval.
	PollInterval time.Duration
	// FlowNamespace is the network namespace whose conntrack events flow
	// logs read; nil means the process's own (the host's on a cell).
	FlowNamespace Namespace
}

// Run is iptables-logger: it opens the output file and the kernel log (at
// its end), then runs, in order, the metrics emitter, the output file
// watcher and the kernel log reader until ctx is done or one of them fails.
func Run(ctx context.Context, logger lager.Logger, cfg Config, opts Options) error {
	logger.Info("starting")
	format, err := cfg.Format()
	if err != nil {
		return err
	}
	out, err := OpenOutput(cfg.OutputLogFile)
	if err != nil {
		return err
	}
	defer out.Close()
	tailer, err := OpenKernelLog(cfg.KernelLogFile, opts.PollInterval)
	if err != nil {
		return fmt.Errorf("tail input: %w", err)
	}
	defer tailer.Close()
	// Upstream's message, which its tests and operators wait for, without
	// data as upstream; which reader tails the file is a debug detail.
	logger.Info("started tailing file")
	logger.Debug("tail-reader", lager.Data{"file": cfg.KernelLogFile, "reader": tailer.Kind()})

	sender := opts.Sender
	if sender == nil {
		var err error
		if sender, err = metrics.NewSenderAt(logger, "iptables-logger", cfg.MetronAddress); err != nil {
			return fmt.Errorf("initializing metrics: %w", err)
		}
		defer sender.Close()
	}

	containers := NewContainers(metadata.New(cfg.ContainerMetadataFile), cfg.HostIP, cfg.HostGUID)
	proc := NewProcessor(logger.Session("iptables-runner"), containers, out, format, opts.Now, sender)
	members := []lifecycle.Member{
		{Name: "metrics_emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, uptimeInterval)},
		{Name: "output_file_watcher", Runner: lifecycle.Poller(logger.Session("output-file-watcher"), "output-file-watcher", outputCheckInterval, 0, out.Check)},
		{Name: "iptables_runner", Runner: lifecycle.Poller(logger.Session("iptables-runner"), "iptables-runner", restartInterval, 0, func(ctx context.Context) error {
			return tailer.Run(ctx, proc)
		})},
	}
	if cfg.EnableFlowLogs {
		flowLogger := logger.Session("flow-logger")
		flows := NewFlowLog(flowLogger, format, cfg.FlowLogsPerSec, cfg.FlowBurst(), opts.Now)
		proc.WithFlows(flows)
		// Its own index: the reader runs beside the kernel log processor.
		reader := NewConntrackReader(flowLogger, flows, NewContainers(metadata.New(cfg.ContainerMetadataFile), cfg.HostIP, cfg.HostGUID),
			out, sender, opts.FlowNamespace, opts.Now)
		members = append(members, lifecycle.Member{Name: "flow_logger", Runner: lifecycle.Poller(flowLogger, "flow-logger", restartInterval, 0, reader.Run)})
	}
	return lifecycle.RunContext(ctx, logger, members...)
}
