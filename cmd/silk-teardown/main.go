// Command silk-teardown releases the cell's lease and deletes its VTEP
// (silk-daemon's BOSH pre-start and drain).
package main

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/silk/daemon"
)

func main() {
	lifecycle.Main(lifecycle.Command[daemon.Config]{
		Name:        "silk-teardown",
		ConfigFlag:  "config",
		ConfigUsage: "path to config file",
		Load:        daemon.LoadConfig,
		// silk-daemon's config, at info whatever its log_level.
		Log:         func(c daemon.Config) (string, string) { return c.LogPrefix, "info" },
		Stderr:      "{name} error",
		ConfigError: "load config file: ",
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg daemon.Config) error {
			return daemon.Teardown(ctx, logger, cfg, nil, nil)
		},
	})
}
