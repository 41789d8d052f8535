// Command iptables-logger follows the kernel log and writes one JSON line,
// with app, space and org, for every packet netman's iptables LOG rules
// logged.
package main

import (
	"context"
	"fmt"
	"strings"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/iptableslogger"
	"github.com/netman-release/netman/src/lifecycle"
)

const job = "iptables-logger"

func main() {
	lifecycle.Main(lifecycle.Command[iptableslogger.Config]{
		Name:        job,
		ConfigFlag:  "config-file",
		ConfigUsage: "path to config file",
		Load:        loadConfig,
		// Upstream has no log_prefix, so its config errors carry the
		// default prefix; netman's optional one applies once loaded.
		Log:    func(c iptableslogger.Config) (string, string) { return c.LogPrefix, c.LogLevel },
		Stderr: "{prefix}.{name}",
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg iptableslogger.Config) error {
			return iptableslogger.Run(ctx, logger, cfg, iptableslogger.Options{})
		},
	})
}

// loadConfig keeps upstream's wording, "reading config: …", which
// configfile's read errors already start with.
func loadConfig(path string) (iptableslogger.Config, error) {
	cfg, err := iptableslogger.LoadConfig(path)
	if err != nil && !strings.HasPrefix(err.Error(), "reading config") {
		err = fmt.Errorf("reading config: %w", err)
	}
	return cfg, err
}
