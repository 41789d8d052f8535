// Command silk-daemon-shutdown is the first step of silk-daemon's BOSH
// drain (package shutdown). Flags are upstream's.
package main

import (
	"context"
	"errors"
	"flag"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/lifecycle"
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

	lifecycle.Main(lifecycle.Command[shutdown.Config]{
		Name: "silk-daemon-shutdown",
		Load: func(string) (shutdown.Config, error) {
			cfg := shutdown.Config{
				MetadataFile:  *metadataFile,
				CheckInterval: time.Duration(*checkInterval) * time.Second,
				CheckTimeout:  time.Duration(*checkTimeout) * time.Second,
				DaemonURL:     *daemonURL,
				DaemonTimeout: time.Duration(*daemonTimeout) * time.Second,
				DaemonPidFile: *pidPath,
				PingTimeout:   time.Duration(*pingTimeout) * time.Second,
			}
			return cfg, check(cfg, *lockFile)
		},
		// Upstream logs the drain at debug level.
		Log: func(shutdown.Config) (string, string) { return logging.DefaultPrefix, "debug" },
		Run: func(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, cfg shutdown.Config) error {
			return shutdown.Run(ctx, logger, cfg, metadata.New(cfg.MetadataFile), iptables.New(iptables.Config{LockFile: *lockFile}))
		},
	})
}

func check(cfg shutdown.Config, lockFile string) error {
	if cfg.MetadataFile == "" || cfg.DaemonURL == "" || cfg.DaemonPidFile == "" || lockFile == "" {
		return errors.New("-containerMetadataFile, -silkDaemonUrl, -silkDaemonPidPath and -iptablesLockFile are required")
	}
	if cfg.CheckInterval <= 0 || cfg.CheckTimeout < 0 || cfg.DaemonTimeout <= 0 || cfg.PingTimeout <= 0 {
		return errors.New("-containerMetadataFileCheckInterval, -silkDaemonTimeout and -pingServerTimeout must be positive, -containerMetadataFileCheckTimeout not negative")
	}
	return nil
}
