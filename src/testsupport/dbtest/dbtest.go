// Package dbtest is the database factory for store suites: it hands each
// test a fresh, empty database on every dialect this machine can reach and
// drops it when the test ends.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	_ "github.com/lib/pq" // registers "postgres" for the admin connection

	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// Environment variables naming the admin connections. Unset means the
// machine defaults (PostgreSQL and MariaDB on 127.0.0.1 with trust auth).
// NETMAN_REQUIRE_DBS=1 turns an unreachable server into a failure instead of
// a skip; scripts/test sets it once it has started both servers.
const (
	EnvPostgres = "NETMAN_TEST_POSTGRES"
	EnvMySQL    = "NETMAN_TEST_MYSQL"
	EnvRequire  = "NETMAN_REQUIRE_DBS"
)

const (
	defaultPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	defaultMySQL    = "root:@tcp(127.0.0.1:3306)/"
)

// Dialects are the database types a suite runs against, sqlite first.
var Dialects = []string{sqldb.TypeSQLite, sqldb.TypePostgres, sqldb.TypeMySQL}

// ForEachDialect runs fn as a subtest per dialect, each with a fresh database.
func ForEachDialect(t *testing.T, fn func(t *testing.T, c sqldb.Config)) {
	t.Helper()
	EachDialect(t, func(t *testing.T, dbType string) {
		fn(t, NewConfig(t, dbType))
	})
}

// EachDialect runs fn as a subtest per dialect; fn makes its own databases
// with NewConfig, one per subtest that needs a clean slate.
func EachDialect(t *testing.T, fn func(t *testing.T, dbType string)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) { fn(t, d) })
	}
}

// NewConfig creates an empty database of the given type and returns the
// `database` config object that reaches it. Unreachable servers skip the
// test (or fail it under NETMAN_REQUIRE_DBS=1).
func NewConfig(tb testing.TB, dbType string) sqldb.Config {
	tb.Helper()
	name := "netman_" + randomSuffix()
	switch dbType {
	case sqldb.TypeSQLite:
		return sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(tb.TempDir(), name+".db"), Timeout: 10}
	case sqldb.TypePostgres:
		return serverDatabase(tb, dbType, name, postgresAdmin)
	case sqldb.TypeMySQL:
		return serverDatabase(tb, dbType, name, mysqlAdmin)
	default:
		tb.Fatalf("unknown database type %q", dbType)
		return sqldb.Config{}
	}
}

type admin struct {
	db   *sql.DB
	base sqldb.Config
	err  error
}

var (
	adminsMu sync.Mutex
	admins   = map[string]*admin{}
)

func serverDatabase(tb testing.TB, dbType, name string, connect func() (*sql.DB, sqldb.Config, error)) sqldb.Config {
	tb.Helper()
	adminsMu.Lock()
	a, ok := admins[dbType]
	if !ok {
		a = &admin{}
		a.db, a.base, a.err = connect()
		admins[dbType] = a
	}
	adminsMu.Unlock()
	if a.err != nil {
		testtier.Unavailable(tb, fmt.Sprintf("%s unreachable (scripts/test starts it; set %s=1 to fail instead): %v", dbType, EnvRequire, a.err), EnvRequire)
		return sqldb.Config{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := a.db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("creating %s database %s: %v", dbType, name, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		drop := "DROP DATABASE IF EXISTS " + name
		if dbType == sqldb.TypePostgres {
			drop += " WITH (FORCE)"
		}
		if _, err := a.db.ExecContext(ctx, drop); err != nil {
			tb.Errorf("dropping %s database %s: %v", dbType, name, err)
		}
	})
	c := a.base
	c.DatabaseName = name
	return c
}

func postgresAdmin() (*sql.DB, sqldb.Config, error) {
	raw := os.Getenv(EnvPostgres)
	if raw == "" {
		raw = defaultPostgres
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, sqldb.Config{}, fmt.Errorf("parsing %s: %w", EnvPostgres, err)
	}
	host, portStr, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, sqldb.Config{}, fmt.Errorf("parsing %s host: %w", EnvPostgres, err)
	}
	port, _ := strconv.Atoi(portStr)
	password, _ := u.User.Password()
	base := sqldb.Config{Type: sqldb.TypePostgres, User: u.User.Username(), Password: password, Host: host, Port: uint16(port), Timeout: 10}
	db, err := pingAdmin("postgres", raw)
	return db, base, err
}

func mysqlAdmin() (*sql.DB, sqldb.Config, error) {
	raw := os.Getenv(EnvMySQL)
	if raw == "" {
		raw = defaultMySQL
	}
	cfg, err := mysql.ParseDSN(raw)
	if err != nil {
		return nil, sqldb.Config{}, fmt.Errorf("parsing %s: %w", EnvMySQL, err)
	}
	host, portStr, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, sqldb.Config{}, fmt.Errorf("parsing %s address: %w", EnvMySQL, err)
	}
	port, _ := strconv.Atoi(portStr)
	base := sqldb.Config{Type: sqldb.TypeMySQL, User: cfg.User, Password: cfg.Passwd, Host: host, Port: uint16(port), Timeout: 10}
	db, err := pingAdmin("mysql", raw)
	return db, base, err
}

func pingAdmin(driver, dsn string) (*sql.DB, error) {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	db.SetMaxOpenConns(4)
	return db, nil
}

func randomSuffix() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
