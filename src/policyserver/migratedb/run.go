package migratedb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// ErrMigrationTimeout is returned when migrating and populating did not
// succeed within database_migration_timeout.
var ErrMigrationTimeout = errors.New("migrations and groups table population timed out")

// Run is migrate-db: connect, migrate and populate the tag pool,
// retrying every retryDelay on any failure until database_migration_timeout
// seconds have passed.
func Run(ctx context.Context, logger lager.Logger, c Config, retryDelay time.Duration) error {
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

func migrateAndPopulate(ctx context.Context, logger lager.Logger, c Config) error {
	logger.Info("getting migration db connection")
	db, err := sqldb.Open(ctx, logger, c.Database, c.Pool)
	if err != nil {
		return fmt.Errorf("getting migration db connection: %w", err)
	}
	defer db.Close()
	logger.Info("migration db connection retrieved")

	logger.Info("running migrations")
	n, err := store.Migrate(ctx, db)
	if err != nil {
		return fmt.Errorf("perform migrations: %w", err)
	}
	logger.Info("finished running migrations", lager.Data{"num-migrations-completed": n})

	logger.Info("populating groups table")
	if err := store.PopulateTables(ctx, db, c.TagLength); err != nil {
		return fmt.Errorf("populating groups table: %w", err)
	}
	logger.Info("finished populating groups table")
	return nil
}
