// Command silk-datastore-syncer keeps the log_config of the cell's
// containers in the container metadata store equal to Garden's (package
// datastoresyncer). Flags are upstream's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/datastoresyncer"
)

// gardenTimeout bounds one request to Garden.
const gardenTimeout = time.Minute

// flags are upstream's.
type flags struct {
	interval                  int
	gardenNetwork, gardenAddr string
	silkFile                  string
	silkFileOwner             string
	silkFileGroup             string
	logLevel                  string
}

func main() {
	var f flags
	flag.IntVar(&f.interval, "n", 30, "sync interval in seconds.")
	flag.StringVar(&f.gardenNetwork, "gardenNetwork", "", "garden network type.")
	flag.StringVar(&f.gardenAddr, "gardenAddr", "", "garden address.")
	flag.StringVar(&f.silkFile, "silkFile", "", "silk file.")
	flag.StringVar(&f.silkFileOwner, "silkFileOwner", "", "owner of silk file")
	flag.StringVar(&f.silkFileGroup, "silkFileGroup", "", "group owner of silk file")
	flag.StringVar(&f.logLevel, "logLevel", "info", "log level")

	lifecycle.Main(lifecycle.Command[flags]{
		Name: "silk-datastore-syncer",
		Load: func(string) (flags, error) { return f, f.check() },
		Log: func(f flags) (string, string) {
			if f.logLevel == "warn" { // the job's documented levels include it; lager has none
				return logging.DefaultPrefix, "error"
			}
			return logging.DefaultPrefix, f.logLevel
		},
		Run: run,
	})
}

func (f flags) check() error {
	var errs []error
	if f.interval < 1 {
		errs = append(errs, fmt.Errorf("-n must be at least 1 (got %d)", f.interval))
	}
	if f.gardenNetwork != "unix" && f.gardenNetwork != "tcp" {
		errs = append(errs, fmt.Errorf("-gardenNetwork must be unix or tcp (got %q)", f.gardenNetwork))
	}
	if f.gardenAddr == "" {
		errs = append(errs, errors.New("-gardenAddr is required"))
	}
	if f.silkFile == "" {
		errs = append(errs, errors.New("-silkFile is required"))
	}
	return errors.Join(errs...)
}

func run(ctx context.Context, logger lager.Logger, _ *lager.ReconfigurableSink, f flags) error {
	logger.Info("properties", lager.Data{
		"interval": f.interval, "gardenNetwork": f.gardenNetwork, "gardenAddr": f.gardenAddr,
		"silkFile": f.silkFile, "silkFileOwner": f.silkFileOwner, "silkFileGroup": f.silkFileGroup,
	})
	s := &datastoresyncer.Syncer{
		Garden: gardenclient.New(f.gardenNetwork, f.gardenAddr, gardenTimeout),
		Store:  metadata.New(f.silkFile, metadata.WithOwner(f.silkFileOwner, f.silkFileGroup)),
		Logger: logger,
	}
	if err := s.WaitForGarden(ctx, time.Second); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		logger.Error("Garden: unrecoverable", err)
		return err
	}
	if err := s.Run(ctx, time.Duration(f.interval)*time.Second); err != nil {
		return err
	}
	logger.Info("exited")
	return nil
}
