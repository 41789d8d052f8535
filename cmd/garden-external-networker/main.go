// Command garden-external-networker is Garden's network plugin: Garden runs
// it with --action up|down --handle <container> --configFile adapter.json,
// and it sets up or tears down the container's network through the CNI
// chain. See docs/garden-external-networker.md.
package main

import (
	"context"
	"os"

	"github.com/netman-release/netman/src/gardennet"
)

func main() {
	if code := gardennet.Main(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr); code != 0 {
		os.Exit(code)
	}
}
