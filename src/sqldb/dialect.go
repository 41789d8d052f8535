package sqldb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Dialect is everything that differs between the supported databases. No
// other file in netman branches on the database type.
type Dialect struct {
	Name string
	// bind is sqlx's placeholder style; queries are written with `?`.
	bind int
	// NowUnix is an SQL expression for the database clock in unix seconds.
	// Time comes from the database so that several controllers on hosts with
	// skewed clocks agree on lease expiry.
	NowUnix string
	// AutoIncrementPK is the column definition of a surrogate integer key.
	AutoIncrementPK string
	// nextTimestamp renders the new value of a TIMESTAMP version column:
	// the database clock at the dialect's best sub-second precision.
	nextTimestamp func(column string) string
	// jsonContainsAny renders "the JSON array in column holds any of n
	// strings", with n `?` placeholders.
	jsonContainsAny func(column string, n int) string
	// hasTable and hasIndex are catalog queries taking the table (and index)
	// name and returning a count.
	hasTable string
	hasIndex string
	// migrationsTable creates upstream's sql-migrate bookkeeping table.
	migrationsTable string
	// uniqueViolation reports whether err is a unique-constraint violation.
	uniqueViolation func(error) bool
	// retriable reports whether a connect error is worth retrying.
	retriable func(error) bool
	open      func(Config) (*sql.DB, error)
	// serialTx: every transaction takes the database's write lock at
	// BEGIN (SQLite's immediate transactions). Queueing them in process
	// is fair and cheap; leaving it to busy_timeout lets an unlucky
	// writer sleep-poll past the timeout under load (SQLITE_BUSY).
	serialTx bool
}

var dialects = map[string]*Dialect{
	TypePostgres: {
		Name:            TypePostgres,
		bind:            sqlx.DOLLAR,
		NowUnix:         "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)",
		AutoIncrementPK: "SERIAL PRIMARY KEY",
		// Microseconds, as upstream writes it, and at least 1µs past the
		// previous value: transactions that began in the same microsecond
		// would otherwise write the same stamp.
		nextTimestamp: func(column string) string {
			return "GREATEST(LOCALTIMESTAMP, " + column + " + interval '1 microsecond')"
		},
		jsonContainsAny: func(column string, n int) string {
			// jsonb_exists_any is the function behind upstream's `?|`
			// operator, which placeholder rebinding would mangle.
			return "jsonb_exists_any(" + column + ", ARRAY[" + placeholders(n) + "]::text[])"
		},
		hasTable:        `SELECT COUNT(*) FROM pg_class c WHERE c.relkind IN ('r', 'p') AND c.relname = ? AND pg_table_is_visible(c.oid)`,
		hasIndex:        `SELECT COUNT(*) FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid JOIN pg_class c ON c.oid = i.indexrelid WHERE t.relname = ? AND c.relname = ? AND pg_table_is_visible(t.oid)`,
		migrationsTable: `CREATE TABLE IF NOT EXISTS gorp_migrations (id text NOT NULL PRIMARY KEY, applied_at timestamp with time zone NULL)`,
		uniqueViolation: func(err error) bool {
			var pqErr *pq.Error
			return errors.As(err, &pqErr) && pqErr.Code == "23505"
		},
		retriable: func(err error) bool {
			var pqErr *pq.Error
			if errors.As(err, &pqErr) {
				// 57P03: the database system is starting up.
				return pqErr.Code == "57P03"
			}
			return isNetworkError(err)
		},
		open: openPostgres,
	},
	TypeMySQL: {
		Name:            TypeMySQL,
		bind:            sqlx.QUESTION,
		NowUnix:         "UNIX_TIMESTAMP()",
		AutoIncrementPK: "int NOT NULL AUTO_INCREMENT PRIMARY KEY",
		// TIMESTAMP(6) after upstream's migration 79; strictly increasing
		// as on PostgreSQL.
		nextTimestamp: func(column string) string {
			return "GREATEST(CURRENT_TIMESTAMP(6), " + column + " + INTERVAL 1 MICROSECOND)"
		},
		jsonContainsAny: func(column string, n int) string {
			terms := make([]string, n)
			for i := range terms {
				terms[i] = "JSON_CONTAINS(" + column + ", JSON_QUOTE(?))"
			}
			return "(" + strings.Join(terms, " OR ") + ")"
		},
		hasTable:        `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`,
		hasIndex:        `SELECT COUNT(*) FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = ? AND index_name = ?`,
		migrationsTable: `CREATE TABLE IF NOT EXISTS gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
		uniqueViolation: func(err error) bool {
			var myErr *mysql.MySQLError
			return errors.As(err, &myErr) && myErr.Number == 1062
		},
		retriable: func(err error) bool {
			var myErr *mysql.MySQLError
			if errors.As(err, &myErr) {
				// 1040 too many connections; 1203 max user connections.
				return myErr.Number == 1040 || myErr.Number == 1203
			}
			return isNetworkError(err) || errors.Is(err, mysql.ErrInvalidConn)
		},
		open: openMySQL,
	},
	TypeSQLite: {
		Name:            TypeSQLite,
		bind:            sqlx.QUESTION,
		NowUnix:         "CAST(strftime('%s','now') AS INTEGER)",
		AutoIncrementPK: "INTEGER PRIMARY KEY AUTOINCREMENT",
		// SQLite's clock has milliseconds; writers are serialised, so
		// stepping past the previous value keeps every write distinct.
		nextTimestamp: func(column string) string {
			return "MAX(strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', " + column + ", '+0.001 seconds'))"
		},
		jsonContainsAny: func(column string, n int) string {
			return "EXISTS (SELECT 1 FROM json_each(" + column + ") WHERE json_each.value IN (" + placeholders(n) + "))"
		},
		hasTable:        `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`,
		hasIndex:        `SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND name = ?`,
		migrationsTable: `CREATE TABLE IF NOT EXISTS gorp_migrations (id varchar(255) NOT NULL PRIMARY KEY, applied_at datetime NULL)`,
		uniqueViolation: func(err error) bool {
			var sqErr *sqlite.Error
			if !errors.As(err, &sqErr) {
				return false
			}
			return sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || sqErr.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		},
		retriable: func(error) bool { return false },
		open:      openSQLite,
		serialTx:  true,
	},
}

// DialectFor returns the dialect for a `type` value.
func DialectFor(dbType string) (*Dialect, error) {
	d, ok := dialects[dbType]
	if !ok {
		return nil, fmt.Errorf("database type %s is not supported", dbType)
	}
	return d, nil
}

// Rebind rewrites `?` placeholders into the dialect's style.
func (d *Dialect) Rebind(query string) string { return sqlx.Rebind(d.bind, query) }

// NextTimestamp is the SQL expression for the new value of a TIMESTAMP
// column that versions a table (policies_info.last_updated): the database
// clock at the dialect's best precision (microseconds; milliseconds on
// SQLite), but at least one step past the column's previous value. Writers
// that update the row one after another (its row lock) therefore always
// produce strictly increasing stamps, so every write is visible as a change
// and a newer stamp always means newer data.
func (d *Dialect) NextTimestamp(column string) string { return d.nextTimestamp(column) }

// JSONArrayContainsAny is an SQL condition, with n `?` placeholders, that
// holds when the JSON array of strings in column contains any of them.
func (d *Dialect) JSONArrayContainsAny(column string, n int) string {
	if n <= 0 {
		return "1 = 0"
	}
	return d.jsonContainsAny(column, n)
}

// HasTable reports whether a table exists in the connected database.
func (d *Dialect) HasTable(ctx context.Context, q Querier, table string) (bool, error) {
	var n int
	err := q.GetContext(ctx, &n, d.hasTable, table)
	return n > 0, err
}

// HasIndex reports whether table has an index (on PostgreSQL and MySQL this
// includes the index behind a UNIQUE constraint) with the given name.
func (d *Dialect) HasIndex(ctx context.Context, q Querier, table, index string) (bool, error) {
	var n int
	err := q.GetContext(ctx, &n, d.hasIndex, table, index)
	return n > 0, err
}

// ByDialect holds one statement list per database, as upstream's
// migrations do (a map from driver name to statements).
type ByDialect struct {
	Postgres []string
	MySQL    []string
	SQLite   []string
}

// Pick returns the statements for this dialect.
func (d *Dialect) Pick(s ByDialect) []string {
	switch d.Name {
	case TypePostgres:
		return s.Postgres
	case TypeMySQL:
		return s.MySQL
	default:
		return s.SQLite
	}
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

// Placeholders returns n comma-separated `?` placeholders for an IN list.
func Placeholders(n int) string { return placeholders(n) }

// IsUniqueViolation reports whether err is a unique-constraint violation.
func (d *Dialect) IsUniqueViolation(err error) bool { return err != nil && d.uniqueViolation(err) }

func isNetworkError(err error) bool {
	var netErr net.Error
	var opErr *net.OpError
	return errors.As(err, &netErr) || errors.As(err, &opErr)
}

func openPostgres(c Config) (*sql.DB, error) {
	q := url.Values{}
	// Upstream passed milliseconds to a key libpq reads as seconds; seconds it is.
	q.Set("connect_timeout", strconv.Itoa(c.Timeout))
	switch {
	case !c.RequireSSL:
		q.Set("sslmode", "disable")
	case c.SkipHostnameValidation:
		q.Set("sslmode", "require")
		if c.CACert != "" {
			q.Set("sslrootcert", c.CACert)
		}
	default:
		if c.CACert == "" {
			return nil, errors.New("require_ssl is set but ca_cert is empty")
		}
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", c.CACert)
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(c.User, c.Password),
		Host:     net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))),
		Path:     "/" + c.DatabaseName,
		RawQuery: q.Encode(),
	}
	connector, err := pq.NewConnector(u.String())
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(connector), nil
}

func openMySQL(c Config) (*sql.DB, error) {
	cfg := mysql.NewConfig()
	cfg.User = c.User
	cfg.Passwd = c.Password
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	cfg.DBName = c.DatabaseName
	cfg.ParseTime = true
	cfg.Timeout = c.ConnectTimeout()
	cfg.ReadTimeout = c.ConnectTimeout()
	cfg.WriteTimeout = c.ConnectTimeout()
	// Rows "affected" must mean rows matched, so an UPDATE that rewrites an
	// unchanged value (two renewals in one second) still counts as a hit.
	cfg.ClientFoundRows = true
	// Double-quoted identifiers, as upstream runs its MySQL sessions.
	cfg.Params = map[string]string{"sql_mode": "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'ANSI_QUOTES')"}
	if c.RequireSSL {
		tlsConfig, err := mysqlTLS(c)
		if err != nil {
			return nil, err
		}
		cfg.TLS = tlsConfig
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(connector), nil
}

func mysqlTLS(c Config) (*tls.Config, error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.Host}
	if c.CACert == "" {
		if c.SkipHostnameValidation {
			return nil, errors.New("require_ssl with skip_hostname_validation needs ca_cert")
		}
		return tlsConfig, nil // system roots
	}
	pem, err := os.ReadFile(c.CACert)
	if err != nil {
		return nil, fmt.Errorf("reading ca_cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("ca_cert %s: no certificates found", c.CACert)
	}
	tlsConfig.RootCAs = pool
	if c.SkipHostnameValidation {
		// Verify the chain but not the name, as upstream's option promises.
		tlsConfig.InsecureSkipVerify = true
		tlsConfig.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("server presented no certificate")
			}
			certs := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				cert, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs = append(certs, cert)
			}
			inter := x509.NewCertPool()
			for _, cert := range certs[1:] {
				inter.AddCert(cert)
			}
			_, err := certs[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	return tlsConfig, nil
}

func openSQLite(c Config) (*sql.DB, error) {
	if dir := filepath.Dir(c.DatabaseName); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("creating directory for sqlite database: %w", err)
		}
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", c.ConnectTimeout().Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous(NORMAL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Writers take the lock when the transaction starts, so two writers
	// never deadlock upgrading read locks.
	q.Set("_txlock", "immediate")
	return sql.Open("sqlite", "file:"+c.DatabaseName+"?"+q.Encode())
}
