// Command bosh-dns-adapter answers bosh-dns's HTTP queries for internal
// domains (apps.internal) with the IPs the service-discovery-controller knows.
package main

import (
	"context"
	"errors"
	"io/fs"
	"os"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/adapter"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	lifecycle.Main(lifecycle.Command[adapter.Config]{
		Name:        "bosh-dns-adapter",
		ConfigFlag:  "c",
		ConfigUsage: "path to config file",
		Load:        adapter.LoadConfig,
		Logger: func(adapter.Config) (lager.Logger, *lager.ReconfigurableSink, error) {
			logger, sink := discovery.NewLogger(adapter.Origin, os.Stdout)
			logger.RegisterSink(lager.NewPrettySink(os.Stderr, lager.ERROR))
			return logger, sink, nil
		},
		LogConfigError: logConfigError,
		// Upstream: 2 for a config file it cannot read or parse, 1 for
		// anything else.
		ConfigExitCode: 2,
		Run: func(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg adapter.Config) error {
			if err := adapter.Run(ctx, logger, sink, cfg); err != nil {
				return lifecycle.ExitCode(1) // logged by Run, as upstream
			}
			return nil
		},
	})
}

// logConfigError logs upstream's info line with the path; netman adds the
// problems, in the data (and on stderr).
func logConfigError(logger lager.Logger, path string, err error) {
	msg := "Could not parse config file"
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		msg = "Could not read config file"
	}
	logger.Info(msg, lager.Data{"path": path, "error": err.Error()})
}
