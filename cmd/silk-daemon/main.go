// Command silk-daemon holds the cell's overlay lease and keeps the VTEP's
// routes, ARP and FDB entries in step with every other cell's lease.
package main

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/silk/daemon"
)

func main() {
	lifecycle.Main(lifecycle.Command[daemon.Config]{
		Name:        "silk-daemon",
		ConfigFlag:  "config",
		ConfigUsage: "path to config file",
		Load:        daemon.LoadConfig,
		Log:         func(c daemon.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name} error",
		ConfigError: "load config file: ",
		Run: func(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg daemon.Config) error {
			return daemon.Run(ctx, logger, sink, cfg, daemon.Options{})
		},
	})
}
