// Command vxlan-policy-agent enforces network policies and dynamic
// application security groups on a cell with iptables.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/logging"
)

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	// Upstream's stderr lines are "<prefix>: <message>" (no job name);
	// the prefix is the default until the config names another.
	prefix := logging.DefaultPrefix
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s: %s\n", prefix, fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := agent.LoadConfig(*configPath)
	if err != nil {
		fail("could not read config file %s", err)
	}
	if cfg.LogPrefix != "" {
		prefix = cfg.LogPrefix
	}
	logger, sink, err := logging.New(cfg.LogPrefix, "vxlan-policy-agent", cfg.LogLevel, os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	logger.Info("parsed-config", lager.Data{"config": cfg})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, logger, sink, cfg, agent.Options{}); err != nil {
		stop()
		// Upstream's die(): an error line named for the action, exit 1.
		var action *agent.ActionError
		if errors.As(err, &action) {
			logger.Error(action.Action, action.Err)
			os.Exit(1)
		}
		fail("%s", err)
	}
}
