// netman manages container-to-container network policies through
// policy-server's external API without Cloud Foundry (the local lab,
// automation). Run `netman help` for the interface.
package main

import (
	"context"
	"os"

	"github.com/netman-release/netman/src/cli/netmancli"
	"github.com/netman-release/netman/src/lifecycle"
)

func main() {
	ctx, stop := lifecycle.SignalContext(context.Background())
	code := netmancli.Main(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
