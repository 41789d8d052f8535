// Command silk-datastore-syncer keeps the log_config of the cell's
// containers in the container metadata store equal to Garden's (package
// datastoresyncer). Flags are upstream's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/datastoresyncer"
)

// gardenTimeout bounds one request to Garden.
const gardenTimeout = time.Minute

func main() {
	interval := flag.Int("n", 30, "sync interval in seconds.")
	gardenNetwork := flag.String("gardenNetwork", "", "garden network type.")
	gardenAddr := flag.String("gardenAddr", "", "garden address.")
	silkFile := flag.String("silkFile", "", "silk file.")
	silkFileOwner := flag.String("silkFileOwner", "", "owner of silk file")
	silkFileGroup := flag.String("silkFileGroup", "", "group owner of silk file")
	logLevel := flag.String("logLevel", "info", "log level")
	flag.Parse()

	fail := func(err error) {
		fmt.Fprintf(os.Stderr, "silk-datastore-syncer: %s\n", err)
		os.Exit(1)
	}
	if err := check(*interval, *gardenNetwork, *gardenAddr, *silkFile); err != nil {
		fail(err)
	}
	level := *logLevel
	if level == "warn" { // the job's documented levels include it; lager has none
		level = "error"
	}
	logger, _, err := logging.New(logging.DefaultPrefix, "silk-datastore-syncer", level, os.Stdout)
	if err != nil {
		fail(err)
	}
	logger.Info("properties", lager.Data{
		"interval": *interval, "gardenNetwork": *gardenNetwork, "gardenAddr": *gardenAddr,
		"silkFile": *silkFile, "silkFileOwner": *silkFileOwner, "silkFileGroup": *silkFileGroup,
	})

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &datastoresyncer.Syncer{
		Garden: gardenclient.New(*gardenNetwork, *gardenAddr, gardenTimeout),
		Store:  metadata.New(*silkFile, metadata.WithOwner(*silkFileOwner, *silkFileGroup)),
		Logger: logger,
	}
	if err := s.WaitForGarden(ctx, time.Second); err != nil {
		if ctx.Err() != nil {
			return
		}
		logger.Error("Garden: unrecoverable", err)
		fail(err)
	}
	if err := s.Run(ctx, time.Duration(*interval)*time.Second); err != nil {
		fail(err)
	}
	logger.Info("exited")
}

func check(interval int, network, addr, file string) error {
	var errs []error
	if interval < 1 {
		errs = append(errs, fmt.Errorf("-n must be at least 1 (got %d)", interval))
	}
	if network != "unix" && network != "tcp" {
		errs = append(errs, fmt.Errorf("-gardenNetwork must be unix or tcp (got %q)", network))
	}
	if addr == "" {
		errs = append(errs, errors.New("-gardenAddr is required"))
	}
	if file == "" {
		errs = append(errs, errors.New("-silkFile is required"))
	}
	return errors.Join(errs...)
}
