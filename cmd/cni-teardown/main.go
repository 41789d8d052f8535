// Command cni-teardown runs in silk-cni's pre-start: it removes legacy
// per-container IFB devices and the on-disk state of containers that did
// not survive the restart (paths_to_delete in its config).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/silk/cni"
)

func main() {
	configPath := flag.String("config", "", "path to config file")
	flag.Parse()

	logger, _, err := logging.New(logging.DefaultPrefix, "cni-teardown", "info", os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cni-teardown: %s\n", err)
		os.Exit(1)
	}
	logger.Info("starting")
	// As upstream, devices go first, even when the config is unreadable.
	cni.RemoveLegacyIFBs(logger)
	cfg, err := cni.LoadTeardownConfig(*configPath)
	if err != nil {
		logger.Error("read-config-file", err)
		os.Exit(1)
	}
	cni.RemovePaths(logger, cfg.PathsToDelete)
	logger.Info("complete")
}
