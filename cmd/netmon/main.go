// Command netmon reports the cell's interface count, iptables rule count and
// overlay device counters as metrics, and optionally a rule-count telemetry
// log.
package main

import (
	"context"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/netmon"
)

const job = "netmon"

func main() {
	lifecycle.Main(lifecycle.Command[netmon.Config]{
		Name:        job,
		ConfigFlag:  "config-file",
		ConfigUsage: "path to config file",
		Load:        netmon.LoadConfig,
		Log:         func(c netmon.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr:      "{prefix}.{name}",
		ConfigError: "reading config: ",
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg netmon.Config) error {
			return netmon.Run(ctx, logger, cfg, netmon.Options{})
		},
	})
}
