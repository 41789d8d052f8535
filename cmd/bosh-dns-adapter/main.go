// Command bosh-dns-adapter answers bosh-dns's HTTP queries for internal
// domains (apps.internal) with the IPs the service-discovery-controller knows.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
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
		// Upstream's info lines with the path; netman adds the problems,
		// in the data and on stderr.
		msg := "Could not parse config file"
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			msg = "Could not read config file"
		}
		logger.Info(msg, lager.Data{"path": *configPath, "error": err.Error()})
		fmt.Fprintf(os.Stderr, "bosh-dns-adapter: %s\n", err)
		os.Exit(exitConfig)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := adapter.Run(ctx, logger, sink, cfg); err != nil {
		stop()
		os.Exit(exitFailure)
	}
}
