// Package migratedb is migrate-db: it brings the policy server's database
// to the current schema and fills the tag pool, retrying until
// database_migration_timeout. policy-server runs the same step at start.
package migratedb

import (
	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/sqldb"
)

// Config is the part of the policy-server config file that
// migrate-db reads (it is pointed at the same file); other keys are ignored.
type Config struct {
	Database                 sqldb.Config `json:"database"`
	DatabaseMigrationTimeout int          `json:"database_migration_timeout"`
	TagLength                int          `json:"tag_length"`
	sqldb.Pool
}

// LoadConfig reads and validates the keys migrate-db needs.
func LoadConfig(path string) (Config, error) {
	var c Config
	if err := configfile.LoadJSON(path, &c); err != nil {
		return c, err
	}
	var p configfile.Problems
	p.Merge("database.", c.Database.Validate())
	p.Merge("", c.Pool.Validate())
	p.Min("database_migration_timeout", c.DatabaseMigrationTimeout, 1)
	p.Required("tag_length", c.TagLength != 0)
	return c, p.Err()
}
