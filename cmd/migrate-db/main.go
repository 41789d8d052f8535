// Command migrate-db brings the policy server's database to the current
// schema and fills the tag pool. BOSH runs it in policy-server's pre-start
// on the bootstrap instance; the daemons never migrate.
package main

import (
	"context"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/migratedb"
)

func main() {
	// Upstream's component name; its prefix and level are not configurable.
	lifecycle.Main(lifecycle.Command[migratedb.Config]{
		Name:        "policy-server-migrate-db",
		ConfigFlag:  "config-file",
		ConfigUsage: "path to the policy-server config file",
		Load:        migratedb.LoadConfig,
		Stderr:      "{prefix}.{name}",
		ConfigError: "could not read config file: ",
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg migratedb.Config) error {
			if err := migratedb.Run(ctx, logger, cfg, time.Second); err != nil {
				fmt.Printf("fatal error occured, %s", err) // upstream's line, on stdout
				return lifecycle.ExitCode(1)
			}
			return nil
		},
	})
}
