package sqldb

import (
	"context"
	"fmt"

	"code.cloudfoundry.org/lager/v3"
)

// Connect is Open as the policy servers start: with upstream's log lines
// around it ("getting db connection", "db connection retrieved") and a
// close function that logs a failure to close rather than returning it.
func Connect(ctx context.Context, logger lager.Logger, c Config, pool Pool) (*DB, func(), error) {
	logger.Info("getting db connection")
	db, err := Open(ctx, logger.Session("db"), c, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("db connect: %w", err)
	}
	logger.Info("db connection retrieved")
	return db, func() {
		if err := db.Close(); err != nil {
			logger.Error("error-closing-connection-pool", err)
		}
	}, nil
}
