// Command healthchecker watches a daemon's health endpoint next to it and
// exits after three failures in a row, so that monit runs the job's
// restart script (package healthchecker). The flag is upstream's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/healthchecker"
	"github.com/netman-release/netman/src/logging"
)

func main() {
	configFile := flag.String("c", "", "Configuration File")
	flag.Parse()
	if err := run(*configFile); err != nil {
		fmt.Fprintf(os.Stderr, "healthchecker: %s\n", err)
		os.Exit(1)
	}
}

func run(path string) error {
	cfg, err := healthchecker.LoadConfig(path)
	if err != nil {
		return err
	}
	level, err := logging.ParseLevel(cfg.LogLevel)
	if err != nil {
		return err
	}
	// Upstream's logger is named after the component, without a prefix.
	logger := lager.NewLogger(cfg.ComponentName)
	logger.RegisterSink(lager.NewReconfigurableSink(lager.NewPrettySink(os.Stdout, lager.DEBUG), level))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w, err := healthchecker.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := w.Run(ctx); err != nil {
		logger.Error("Error running healthcheck:", err)
		return err
	}
	return nil
}
