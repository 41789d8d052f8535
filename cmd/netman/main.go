// netman manages container-to-container network policies through
// policy-server's external API without Cloud Foundry (the local lab,
// automation). Run `netman help` for the interface.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/netman-release/netman/src/cli/netmancli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := netmancli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
