// Command healthchecker watches a daemon's health endpoint next to it and
// exits after three failures in a row, so that monit runs the job's
// restart script (package healthchecker). The flag is upstream's.
package main

import (
	"context"
	"os"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/healthchecker"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/logging"
)

func main() {
	lifecycle.Main(lifecycle.Command[healthchecker.Config]{
		Name:        "healthchecker",
		ConfigFlag:  "c",
		ConfigUsage: "Configuration File",
		Load:        healthchecker.LoadConfig,
		Logger:      newLogger,
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg healthchecker.Config) error {
			w, err := healthchecker.New(cfg, logger)
			if err != nil {
				return err
			}
			if err := w.Run(ctx); err != nil {
				logger.Error("Error running healthcheck:", err)
				return err
			}
			return nil
		},
	})
}

// newLogger names the logger after the component, without a prefix, as
// upstream.
func newLogger(cfg healthchecker.Config) (lager.Logger, *lager.ReconfigurableSink, error) {
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		return nil, nil, err
	}
	sink := lager.NewReconfigurableSink(lager.NewPrettySink(os.Stdout, lager.DEBUG), level)
	logger := lager.NewLogger(cfg.ComponentName)
	logger.RegisterSink(sink)
	return logger, sink, nil
}
