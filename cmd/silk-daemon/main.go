// Command silk-daemon holds the cell's overlay lease and keeps the VTEP's
// routes, ARP and FDB entries in step with every other cell's lease.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/silk/daemon"
)

func main() {
	configPath := flag.String("config", "", "path to config file")
	flag.Parse()

	prefix := logging.DefaultPrefix
	fail := func(format string, args ...any) {
		// Upstream's stderr line, which operators and tests grep for.
		fmt.Fprintf(os.Stderr, "%s.silk-daemon error: %s\n", prefix, fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := daemon.LoadConfig(*configPath)
	if err != nil {
		// Upstream fails before reading log_prefix: the default prefix.
		fail("load config file: %s", err)
	}
	if cfg.LogPrefix != "" {
		prefix = cfg.LogPrefix
	}
	logger, sink, err := logging.New(cfg.LogPrefix, "silk-daemon", cfg.LogLevel, os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, logger, sink, cfg, daemon.Options{}); err != nil {
		fail("%s", err)
	}
}
