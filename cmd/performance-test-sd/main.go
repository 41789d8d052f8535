// Command performance-test-sd is the performance-test-sd errand: it checks
// that NATS delivers service-discovery.register messages to every
// service-discovery-controller and that they do not load NATS much more
// than router.register traffic (package perftest). It exits 0 when both
// checks pass and 1 with the reason when not.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/discovery/perftestsd"
)

func main() {
	path := flag.String("config", "/var/vcap/jobs/performance-test-sd/config.json", "path to config.json")
	flag.Parse()
	if env := os.Getenv("CONFIG"); env != "" && !isSet("config") {
		*path = env // upstream's test suite reads $CONFIG
	}
	cfg, err := perftestsd.LoadConfig(*path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "performance-test-sd: %s\n", err)
		os.Exit(1)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := perftestsd.Run(ctx, cfg, perftestsd.Options{Out: os.Stdout}); err != nil {
		fmt.Fprintf(os.Stderr, "performance-test-sd: FAIL: %s\n", err)
		os.Exit(1)
	}
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
