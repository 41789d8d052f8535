// Command bosh-dns-adapter answers bosh-dns's HTTP queries for internal
// domains (apps.internal) with the IPs the service-discovery-controller knows.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/adapter"
)

// Upstream's exit codes: 2 for a config file it cannot read or parse, 1 for
// anything else.
const (
	exitConfig  = 2
	exitFailure = 1
)

func main() {
	configPath := flag.String("c", "", "path to config file")
	flag.Parse()

	logger, sink := discovery.NewLogger(adapter.Origin, os.Stdout)
	logger.RegisterSink(lager.NewPrettySink(os.Stderr, lager.ERROR))
	cfg, err := adapter.LoadConfig(*configPath)
	if err != nil {
		discovery.LogConfigError(logger, *configPath, err)
		os.Exit(exitConfig)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := adapter.Run(ctx, logger, sink, cfg); err != nil {
		stop()
		os.Exit(exitFailure)
	}
}
