package lab

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers "mysql" for the admin connection
	_ "github.com/lib/pq"              // registers "postgres" for the admin connection

	"github.com/netman-release/netman/src/sqldb"
)

// Database types the lab runs on.
const (
	DBSQLite   = "sqlite"
	DBPostgres = "postgres"
	DBMySQL    = "mysql"
)

// server is how the lab reaches a database server as its administrator:
// the machine defaults scripts/lib/db.sh sets up.
type server struct {
	driver, dsn string
	config      sqldb.Config // the `database` object, less database_name
	drop        string       // DROP DATABASE statement prefix
}

var servers = map[string]server{
	DBPostgres: {
		driver: "postgres", dsn: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		config: sqldb.Config{Type: sqldb.TypePostgres, User: "postgres", Host: "127.0.0.1", Port: 5432, Timeout: 30},
		drop:   "DROP DATABASE IF EXISTS %s WITH (FORCE)",
	},
	DBMySQL: {
		driver: "mysql", dsn: "root:@tcp(127.0.0.1:3306)/",
		config: sqldb.Config{Type: sqldb.TypeMySQL, User: "root", Host: "127.0.0.1", Port: 3306, Timeout: 30},
		drop:   "DROP DATABASE IF EXISTS %s",
	},
}

// newDatabase makes the lab database name of kind (a file in dir for
// sqlite, a fresh database on the server otherwise) and returns its
// `database` object. A database of that name left by an earlier lab is
// replaced.
func newDatabase(ctx context.Context, kind, dir, name string) (sqldb.Config, error) {
	if kind == DBSQLite {
		return SQLite(filepath.Join(dir, name+".db")), nil
	}
	srv, ok := servers[kind]
	if !ok {
		return sqldb.Config{}, fmt.Errorf("unknown database %q (sqlite, postgres or mysql)", kind)
	}
	err := srv.exec(ctx, fmt.Sprintf(srv.drop, name), "CREATE DATABASE "+name)
	if err != nil {
		return sqldb.Config{}, err
	}
	cfg := srv.config
	cfg.DatabaseName = name
	return cfg, nil
}

// dropDatabase drops a database newDatabase made on a server.
func dropDatabase(ctx context.Context, cfg sqldb.Config) error {
	srv, ok := servers[cfg.Type]
	if !ok || cfg.DatabaseName == "" {
		return nil // sqlite: a file in the lab's directory
	}
	return srv.exec(ctx, fmt.Sprintf(srv.drop, cfg.DatabaseName))
}

func (srv server) exec(ctx context.Context, stmts ...string) error {
	db, err := sql.Open(srv.driver, srv.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s on %s: %w", s, srv.config.Host, err)
		}
	}
	return nil
}
