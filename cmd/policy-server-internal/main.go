// Command policy-server-internal serves the policy server's internal API
// (policies with tags, tags, security groups) to cells over mutual TLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/policyserver/internalapi"
)

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	cfg, err := internalapi.LoadConfig(*configPath)
	if err != nil {
		// Upstream's line, always with the default prefix: the config
		// that might name another is the one that failed.
		fatalf("", "could not read config file: %s", err)
	}
	logger, sink, err := logging.New(cfg.LogPrefix, internalapi.Component, cfg.LogLevel, os.Stdout)
	if err != nil {
		fatalf(cfg.LogPrefix, "%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := internalapi.Run(ctx, logger, sink, cfg); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
	logger.Info("exited")
}

// fatalf writes upstream's "<prefix>.policy-server-internal: <message>" to
// stderr and exits 1.
func fatalf(prefix, format string, args ...any) {
	if prefix == "" {
		prefix = logging.DefaultPrefix
	}
	fmt.Fprintf(os.Stderr, "%s.%s: %s\n", prefix, internalapi.Component, fmt.Sprintf(format, args...))
	os.Exit(1)
}
