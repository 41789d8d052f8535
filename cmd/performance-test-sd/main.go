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

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery/perftestsd"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	path := flag.String("config", "/var/vcap/jobs/performance-test-sd/config.json", "path to config.json")
	lifecycle.Main(lifecycle.Command[perftestsd.Config]{
		Name: "performance-test-sd",
		Load: func(string) (perftestsd.Config, error) {
			if env := os.Getenv("CONFIG"); env != "" && !isSet("config") {
				*path = env // upstream's test suite reads $CONFIG
			}
			return perftestsd.LoadConfig(*path)
		},
		Run: func(ctx context.Context, _ lager.Logger, _ *lager.ReconfigurableSink, cfg perftestsd.Config) error {
			if err := perftestsd.Run(ctx, cfg, perftestsd.Options{Out: os.Stdout}); err != nil {
				return fmt.Errorf("FAIL: %w", err)
			}
			return nil
		},
	})
}

func isSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
