// Command vxlan-policy-agent enforces network policies and dynamic
// application security groups on a cell with iptables.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/logging"
)

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	prefix := logging.DefaultPrefix
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s.vxlan-policy-agent: %s\n", prefix, fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := agent.LoadConfig(*configPath)
	if cfg.LogPrefix != "" {
		prefix = cfg.LogPrefix
	}
	if err != nil {
		fail("could not read config file: %s", err)
	}
	logger, sink, err := logging.New(cfg.LogPrefix, "vxlan-policy-agent", cfg.LogLevel, os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, logger, sink, cfg, agent.Options{}); err != nil {
		fail("%s", err)
	}
}
