// Command policy-server-asg-syncer copies Cloud Controller's application
// security groups into the policy server's database while holding a lock
// (locket, or the database itself), so cells enforce ASG changes without
// app restarts.
package main

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
)

func main() {
	lifecycle.Main(lifecycle.Command[asgsyncer.Config]{
		Name:        asgsyncer.Component,
		ConfigFlag:  "config-file",
		ConfigUsage: "path to config file",
		Load:        asgsyncer.LoadConfig,
		Log:         func(c asgsyncer.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name}",
		ConfigError: "could not read config file: ",
		Exited:      true,
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg asgsyncer.Config) error {
			return asgsyncer.Run(ctx, logger, cfg)
		},
	})
}
