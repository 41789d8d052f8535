// Command service-discovery-controller keeps the table of internal routes
// (*.apps.internal) that route emitters publish on NATS and serves lookups
// to bosh-dns-adapter over mutual TLS.
package main

import (
	"context"
	"os"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	lifecycle.Main(lifecycle.Command[sdcontroller.Config]{
		Name:        "service-discovery-controller",
		ConfigFlag:  "c",
		ConfigUsage: "path to config file",
		Load:        sdcontroller.LoadConfig,
		Logger: func(sdcontroller.Config) (lager.Logger, *lager.ReconfigurableSink, error) {
			logger, sink := discovery.NewLogger(sdcontroller.Origin, os.Stdout)
			return logger, sink, nil
		},
		LogConfigError: discovery.LogConfigError,
		ExitCode:       2, // upstream's, for every start-up or run failure
		Run: func(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg sdcontroller.Config) error {
			return sdcontroller.Run(ctx, logger, sink, cfg)
		},
	})
}
