// Command silk-daemon-shutdown is the first step of silk-daemon's BOSH
// drain (package shutdown). Flags are upstream's.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/shutdown"
)

func main() {
	metadataFile := flag.String("containerMetadataFile", "", "path to container metadata file. This is used to ensure all containers have been drained before tearing down silk.")
	checkInterval := flag.Int("containerMetadataFileCheckInterval", 5, "interval (seconds) between checks to the metadata file")
	checkTimeout := flag.Int("containerMetadataFileCheckTimeout", 600, "timeout (seconds) when checking the metadata file")
	daemonURL := flag.String("silkDaemonUrl", "", "path to silk daemon url")
	daemonTimeout := flag.Int("silkDaemonTimeout", 2, "timeout (seconds) between calls to silk daemon")
	pidPath := flag.String("silkDaemonPidPath", "", "pid file of silk daemon")
	pingTimeout := flag.Int("pingServerTimeout", 600, "timeout (seconds) when pinging if server is up")
	lockFile := flag.String("iptablesLockFile", "", "path to iptablesLockFile")
	flag.Parse()

	if err := run(shutdown.Config{
		MetadataFile:  *metadataFile,
		CheckInterval: time.Duration(*checkInterval) * time.Second,
		CheckTimeout:  time.Duration(*checkTimeout) * time.Second,
		DaemonURL:     *daemonURL,
		DaemonTimeout: time.Duration(*daemonTimeout) * time.Second,
		DaemonPidFile: *pidPath,
		PingTimeout:   time.Duration(*pingTimeout) * time.Second,
	}, *lockFile); err != nil {
		fmt.Fprintf(os.Stderr, "silk-daemon-shutdown: %s\n", err)
		os.Exit(1)
	}
}

func run(cfg shutdown.Config, lockFile string) error {
	if cfg.MetadataFile == "" || cfg.DaemonURL == "" || cfg.DaemonPidFile == "" || lockFile == "" {
		return fmt.Errorf("-containerMetadataFile, -silkDaemonUrl, -silkDaemonPidPath and -iptablesLockFile are required")
	}
	if cfg.CheckInterval <= 0 || cfg.CheckTimeout < 0 || cfg.DaemonTimeout <= 0 || cfg.PingTimeout <= 0 {
		return fmt.Errorf("-containerMetadataFileCheckInterval, -silkDaemonTimeout and -pingServerTimeout must be positive, -containerMetadataFileCheckTimeout not negative")
	}
	// Upstream logs the drain at debug level.
	logger, _, err := logging.New(logging.DefaultPrefix, "silk-daemon-shutdown", "debug", os.Stdout)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return shutdown.Run(ctx, logger, cfg, metadata.New(cfg.MetadataFile), iptables.New(iptables.Config{LockFile: lockFile}))
}
