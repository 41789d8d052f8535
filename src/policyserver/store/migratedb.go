package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/config"
	"github.com/netman-release/netman/src/sqldb"
)

// MigrateDBConfig is the part of the policy-server config file that
// migrate-db reads (it is pointed at the same file); other keys are ignored.
type MigrateDBConfig struct {
	Database                 sqldb.Config `json:"database"`
	DatabaseMigrationTimeout int          `json:"database_migration_timeout"`
	TagLength                int          `json:"tag_length"`
	sqldb.Pool
}

// LoadMigrateDBConfig reads and validates the keys migrate-db needs.
func LoadMigrateDBConfig(path string) (MigrateDBConfig, error) {
	var c MigrateDBConfig
	if err := config.LoadJSON(path, &c); err != nil {
		return c, err
	}
	var p config.Problems
	p.Merge("database.", c.Database.Validate())
	p.Merge("", c.Pool.Validate())
	p.Min("database_migration_timeout", c.DatabaseMigrationTimeout, 1)
	p.Required("tag_length", c.TagLength != 0)
	return c, p.Err()
}

// ErrMigrationTimeout is returned when migrating and populating did not
// succeed within database_migration_timeout.
var ErrMigrationTimeout = errors.New("migrations and groups table population timed out")

// RunMigrateDB is migrate-db: connect, migrate and populate the tag pool,
// retrying every retryDelay on any failure until database_migration_timeout
// seconds have passed.
func RunMigrateDB(ctx context.Context, logger lager.Logger, c MigrateDBConfig, retryDelay time.Duration) error {
	timeout := time.Duration(c.DatabaseMigrationTimeout) * time.Second
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := migrateAndPopulate(ctx, logger, c)
		if err == nil {
			return nil
		}
		if ctx.Err() == nil {
			logger.Error("failed migrating and populating tags, retrying", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w after %d seconds", ErrMigrationTimeout, c.DatabaseMigrationTimeout)
		case <-time.After(retryDelay):
		}
	}
}

func migrateAndPopulate(ctx context.Context, logger lager.Logger, c MigrateDBConfig) error {
	logger.Info("getting migration db connection")
	db, err := sqldb.Open(ctx, logger, c.Database, c.Pool)
	if err != nil {
		return fmt.Errorf("getting migration db connection: %w", err)
	}
	defer db.Close()
	logger.Info("migration db connection retrieved")

	logger.Info("running migrations")
	n, err := Migrate(ctx, db)
	if err != nil {
		return fmt.Errorf("perform migrations: %w", err)
	}
	logger.Info("finished running migrations", lager.Data{"num-migrations-completed": n})

	logger.Info("populating groups table")
	if err := PopulateTables(ctx, db, c.TagLength); err != nil {
		return fmt.Errorf("populating groups table: %w", err)
	}
	logger.Info("finished populating groups table")
	return nil
}
