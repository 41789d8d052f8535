package lab

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	_ "github.com/go-sql-driver/mysql" // registers "mysql" for the admin connection
	_ "github.com/lib/pq"              // registers "postgres" for the admin connection
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
	config      map[string]any // the `database` object, less database_name
	drop        string         // DROP DATABASE statement prefix
}

var servers = map[string]server{
	DBPostgres: {
		driver: "postgres", dsn: "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
		config: map[string]any{"type": "postgres", "user": "postgres", "password": "", "host": "127.0.0.1", "port": 5432, "timeout": 30},
		drop:   "DROP DATABASE IF EXISTS %s WITH (FORCE)",
	},
	DBMySQL: {
		driver: "mysql", dsn: "root:@tcp(127.0.0.1:3306)/",
		config: map[string]any{"type": "mysql", "user": "root", "password": "", "host": "127.0.0.1", "port": 3306, "timeout": 30},
		drop:   "DROP DATABASE IF EXISTS %s",
	},
}

// newDatabase makes the lab database name of kind (a file in dir for
// sqlite, a fresh database on the server otherwise) and returns its
// `database` object. A database of that name left by an earlier lab is
// replaced.
func newDatabase(ctx context.Context, kind, dir, name string) (map[string]any, error) {
	if kind == DBSQLite {
		return SQLite(filepath.Join(dir, name+".db")), nil
	}
	srv, ok := servers[kind]
	if !ok {
		return nil, fmt.Errorf("unknown database %q (sqlite, postgres or mysql)", kind)
	}
	err := srv.exec(ctx, fmt.Sprintf(srv.drop, name), "CREATE DATABASE "+name)
	if err != nil {
		return nil, err
	}
	cfg := map[string]any{"database_name": name}
	for k, v := range srv.config {
		cfg[k] = v
	}
	return cfg, nil
}

// dropDatabase drops a database newDatabase made on a server.
func dropDatabase(ctx context.Context, cfg map[string]any) error {
	kind, _ := cfg["type"].(string)
	name, _ := cfg["database_name"].(string)
	srv, ok := servers[kind]
	if !ok || name == "" {
		return nil // sqlite: a file in the lab's directory
	}
	return srv.exec(ctx, fmt.Sprintf(srv.drop, name))
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
			return fmt.Errorf("%s on %s: %w", s, srv.config["host"], err)
		}
	}
	return nil
}
