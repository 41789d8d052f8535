package bbr

import (
	"context"
	"fmt"
	"io"
)

// Tools names the client programs for the network databases; found on
// PATH unless given as paths.
type Tools struct {
	PGDump, PGRestore, MySQLDump, MySQL string
}

// DefaultTools are the programs' usual names (Debian's MariaDB packages
// install mysqldump and mysql as aliases of mariadb-dump and mariadb).
var DefaultTools = Tools{PGDump: "pg_dump", PGRestore: "pg_restore", MySQLDump: "mysqldump", MySQL: "mysql"}

// Runner backs up and restores databases.
type Runner struct {
	Tools Tools
	// Log receives the client programs' verbose output (the SDK runs them
	// verbose too); nil discards it.
	Log io.Writer
}

// Backup writes a backup of the database to the artifact file.
func (r Runner) Backup(ctx context.Context, c Config, artifact string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var err error
	switch c.Adapter {
	case AdapterSQLite:
		err = backupSQLite(ctx, c.Database, artifact)
	case AdapterPostgres:
		err = r.backupPostgres(ctx, c, artifact)
	case AdapterMySQL:
		err = r.backupMySQL(ctx, c, artifact)
	}
	if err != nil {
		return fmt.Errorf("backing up %s database %s: %w", c.Adapter, c.Database, err)
	}
	return nil
}

// Restore replaces the database's contents with the artifact's. As with
// the SDK, the database itself must exist (for sqlite: its directory).
func (r Runner) Restore(ctx context.Context, c Config, artifact string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	var err error
	switch c.Adapter {
	case AdapterSQLite:
		err = restoreSQLite(ctx, c.Database, artifact)
	case AdapterPostgres:
		err = r.restorePostgres(ctx, c, artifact)
	case AdapterMySQL:
		err = r.restoreMySQL(ctx, c, artifact)
	}
	if err != nil {
		return fmt.Errorf("restoring %s database %s: %w", c.Adapter, c.Database, err)
	}
	return nil
}

func (r Runner) log() io.Writer {
	if r.Log == nil {
		return io.Discard
	}
	return r.Log
}
