// Command policy-server serves the external policy API (v0 and v1) to the
// cf CLI and operators, with UAA tokens and Cloud Controller space checks,
// and periodically deletes policies of deleted apps.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/migratedb"
)

const job = "policy-server"

func main() {
	configPath := flag.String("config-file", "", "path to the JSON config file")
	flag.Parse()

	cfg, err := external.LoadConfig(*configPath)
	if err != nil {
		// Upstream's line, always with the default prefix: the config
		// that might name another is the one that failed.
		fmt.Fprintf(os.Stderr, "%s.%s: could not read config file: %s\n", logging.DefaultPrefix, job, err)
		os.Exit(1)
	}
	logger, sink, err := logging.New(cfg.LogPrefix, job, cfg.LogLevel, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s.%s: %s\n", cfg.LogPrefix, job, err)
		os.Exit(1)
	}
	logger.Debug("Debug Logging Enabled")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = external.Run(ctx, logger, sink, cfg)
	if err != nil {
		stop()
		if errors.Is(err, migratedb.ErrMigrationTimeout) {
			logger.Error("db migrations and populating tags failed", err)
			os.Exit(3)
		}
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}
