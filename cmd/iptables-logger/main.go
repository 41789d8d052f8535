// Command iptables-logger follows the kernel log and writes one JSON line,
// with app, space and org, for every packet netman's iptables LOG rules
// logged.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/netman-release/netman/src/iptableslogger"
	"github.com/netman-release/netman/src/logging"
)

const job = "iptables-logger"

func main() {
	configPath := flag.String("config-file", "", "path to config file")
	flag.Parse()

	// Upstream's stderr lines always carry the default prefix (it has no
	// log_prefix key); netman's optional log_prefix applies once the config
	// has loaded.
	prefix := logging.DefaultPrefix
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s.%s: %s\n", prefix, job, fmt.Sprintf(format, args...))
		os.Exit(1)
	}
	cfg, err := iptableslogger.LoadConfig(*configPath)
	if err != nil {
		// Upstream's wording: "cfnetworking.iptables-logger: reading config: …"
		// (config.LoadJSON's read errors already start so).
		msg := err.Error()
		if !strings.HasPrefix(msg, "reading config") {
			msg = "reading config: " + msg
		}
		fail("%s", msg)
	}
	if cfg.LogPrefix != "" {
		prefix = cfg.LogPrefix
	}
	logger, _, err := logging.New(cfg.LogPrefix, job, cfg.LogLevel, os.Stdout)
	if err != nil {
		fail("%s", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := iptableslogger.Run(ctx, logger, cfg, iptableslogger.Options{}); err != nil {
		fail("%s", err)
	}
}
