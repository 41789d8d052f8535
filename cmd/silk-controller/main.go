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

	cfg, err := controller.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "silk-controller: %s\n", err)
		os.Exit(1)
	}
	logger, sink, err := logging.New(cfg.LogPrefix, "silk-controller", cfg.LogLevel, os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "silk-controller: %s\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := controller.Run(ctx, logger, sink, cfg); err != nil {
		logger.Error("exited-with-failure", err)
		os.Exit(1)
	}
}
