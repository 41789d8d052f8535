// Command silk-controller leases overlay subnets to cells over mTLS.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/silk/controller"
)

func main() {
	configPath := flag.String("config", "", "path to the JSON config file")
	flag.Parse()

	// Upstream's stderr line, "<prefix>.silk-controller error: <err>", with
	// the default prefix until the config names another.
	prefix := logging.DefaultPrefix
	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "%s.silk-controller error: %s\n", prefix, err)
		os.Exit(1)
	}
	cfg, err := controller.LoadConfig(*configPath)
	if err != nil {
		fail(fmt.Errorf("load config: %w", err))
	}
	if cfg.LogPrefix != "" {
		prefix = cfg.LogPrefix
	}
	logger, sink, err := logging.New(cfg.LogPrefix, "silk-controller", cfg.LogLevel, os.Stdout)
	if err != nil {
		fail(err)
	}
	logger.Info("starting")
	logger.Info("parsed-config")
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Run(ctx, logger, sink, cfg); err != nil {
		stop()
		fail(err)
	}
	logger.Info("exited")
}
