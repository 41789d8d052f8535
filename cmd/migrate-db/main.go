// Command migrate-db brings the policy server's database to the current
// schema and fills the tag pool. BOSH runs it in policy-server's pre-start
// on the bootstrap instance; the daemons never migrate.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/policyserver/migratedb"
)

// Upstream's component name; its prefix is not configurable.
const component = "policy-server-migrate-db"

func main() {
	configPath := flag.String("config-file", "", "path to the policy-server config file")
	flag.Parse()

	cfg, err := migratedb.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s.%s: could not read config file: %s\n", logging.DefaultPrefix, component, err)
		os.Exit(1)
	}
	logger, _, err := logging.New(logging.DefaultPrefix, component, "info", os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s.%s: %s\n", logging.DefaultPrefix, component, err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := migratedb.Run(ctx, logger, cfg, time.Second); err != nil {
		fmt.Printf("fatal error occured, %s", err)
		os.Exit(1)
	}
}
