// Command service-discovery-controller keeps the table of internal routes
// (*.apps.internal) that route emitters publish on NATS and serves lookups
// to bosh-dns-adapter over mutual TLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
)

// Upstream exits 2 on every start-up or run failure.
const exitFailure = 2

func main() {
	configPath := flag.String("c", "", "path to config file")
	flag.Parse()

	logger, sink := discovery.NewLogger(sdcontroller.Origin, os.Stdout)
	cfg, err := sdcontroller.LoadConfig(*configPath)
	if err != nil {
		discovery.LogConfigError(logger, *configPath, err)
		fmt.Fprintf(os.Stderr, "service-discovery-controller: %s\n", err)
		os.Exit(exitFailure)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := sdcontroller.Run(ctx, logger, sink, cfg); err != nil {
		fmt.Fprintf(os.Stderr, "service-discovery-controller: %s\n", err)
		stop()
		os.Exit(exitFailure)
	}
}
