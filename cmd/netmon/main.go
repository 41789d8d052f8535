// Command netmon reports the cell's interface count, iptables rule count and
// overlay device counters as metrics, and optionally a rule-count telemetry
// log.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/netmon"
)

const job = "netmon"

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	prefix := logging.DefaultPrefix
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s.%s: %s\n", prefix, job, fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := netmon.LoadConfig(*configPath)
	if err != nil {
		// Upstream's wording, always with the default prefix:
		// "cfnetworking.netmon: reading config: invalid config: …".
		fail("reading config: %s", err)
	}
	prefix = cfg.LogPrefix
	logger, _, err := logging.New(cfg.LogPrefix, job, cfg.LogLevel, os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := netmon.Run(ctx, logger, cfg, netmon.Options{}); err != nil {
		fail("%s", err)
	}
}
