// Command vxlan-policy-agent enforces network policies and dynamic
// application security groups on a cell with iptables.
package main

import (
	"context"
	"errors"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	lifecycle.Main(lifecycle.Command[agent.Config]{
		Name:        "vxlan-policy-agent",
		ConfigFlag:  "config-file",
		ConfigUsage: "path to config file",
		Load:        agent.LoadConfig,
		Log:         func(c agent.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		// Upstream's stderr lines carry no job name.
		Stderr:      "{prefix}",
		ConfigError: "could not read config file ",
		Run:         runAgent,
	})
}

func runAgent(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg agent.Config) error {
	logger.Info("parsed-config", lager.Data{"config": cfg})
	err := agent.Run(ctx, logger, sink, cfg, agent.Options{})
	// Upstream's die(): an error line named for the action, exit 1.
	var action *agent.ActionError
	if errors.As(err, &action) {
		logger.Error(action.Action, action.Err)
		return lifecycle.ExitCode(1)
	}
	return err
}
