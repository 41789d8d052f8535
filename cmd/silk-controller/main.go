// Command silk-controller leases overlay subnets to cells over mTLS.
package main

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/silk/controller"
)

func main() {
	lifecycle.Main(lifecycle.Command[controller.Config]{
		Name:        "silk-controller",
		ConfigFlag:  "config",
		ConfigUsage: "path to the JSON config file",
		Load:        controller.LoadConfig,
		Log:         func(c controller.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name} error",
		ConfigError: "load config: ",
		Run: func(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg controller.Config) error {
			logger.Info("starting")
			logger.Info("parsed-config")
			if err := controller.Run(ctx, logger, sink, cfg); err != nil {
				return err
			}
			logger.Info("exited")
			return nil
		},
	})
}
