// Command policy-server-asg-syncer copies Cloud Controller's application
// security groups into the policy server's database while holding a lock
// (locket, or the database itself), so cells enforce ASG changes without
// app restarts.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
)

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	cfg, err := asgsyncer.LoadConfig(*configPath)
	if err != nil {
		fatalf(cfg.LogPrefix, "could not read config file: %s", err)
	}
	logger, _, err := logging.New(cfg.LogPrefix, asgsyncer.Component, cfg.LogLevel, os.Stdout)
	if err != nil {
		fatalf(cfg.LogPrefix, "%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := asgsyncer.Run(ctx, logger, cfg); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}

// fatalf writes upstream's "<prefix>.policy-server-asg-syncer: <message>"
// to stderr and exits 1.
func fatalf(prefix, format string, args ...any) {
	if prefix == "" {
		prefix = logging.DefaultPrefix
	}
	fmt.Fprintf(os.Stderr, "%s.%s: %s\n", prefix, asgsyncer.Component, fmt.Sprintf(format, args...))
	os.Exit(1)
}
