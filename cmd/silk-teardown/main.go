// Command silk-teardown releases the cell's lease and deletes its VTEP
// (silk-daemon's BOSH pre-start and drain).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/silk/daemon"
)

func main() {
	configPath := flag.String("config", "", "path to config file")
	flag.Parse()

	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "silk-teardown error: %s\n", fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := daemon.LoadConfig(*configPath)
	if err != nil {
		fail("load config file: %s", err)
	}
	logger, _, err := logging.New(cfg.LogPrefix, "silk-teardown", "info", os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := daemon.Teardown(ctx, logger, cfg, nil, nil); err != nil {
		fail("%s", err)
	}
}
