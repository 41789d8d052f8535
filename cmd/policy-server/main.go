// Command policy-server serves the external policy API (v0 and v1) to the
// cf CLI and operators, with UAA tokens and Cloud Controller space checks,
// and periodically deletes policies of deleted apps.
package main

import (
	"context"
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/migratedb"
)

const job = "policy-server"

func main() {
	lifecycle.Main(lifecycle.Command[external.Config]{
		Name:        job,
		ConfigFlag:  "config-file",
		ConfigUsage: "path to the JSON config file",
		Load:        external.LoadConfig,
		Log:         func(c external.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name}",
		ConfigError: "could not read config file: ",
		Exited:      true,
		Run:         run,
	})
}

func run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg external.Config) error {
	logger.Debug("Debug Logging Enabled")
	err := external.Run(ctx, logger, sink, cfg)
	if errors.Is(err, migratedb.ErrMigrationTimeout) {
		// Upstream's line and exit code, instead of "exited-with-failure".
		logger.Error("db migrations and populating tags failed", err)
		return lifecycle.ExitCode(3)
	}
	return err
}
