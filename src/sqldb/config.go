// Package sqldb opens netman's SQL databases (PostgreSQL, MySQL/MariaDB and
// the embedded SQLite default) from upstream's `database` config object,
// applies embedded migrations recorded in upstream's `gorp_migrations`
// table, and is the one place that knows how the dialects differ.
package sqldb

import (
	"time"

	"github.com/netman-release/netman/src/configfile"
)

// Database types accepted in the `type` key.
const (
	TypePostgres = "postgres"
	TypeMySQL    = "mysql"
	TypeSQLite   = "sqlite"
)

// Config is upstream's `database` config object. For sqlite, DatabaseName is
// the path of the database file and the network keys are ignored.
type Config struct {
	Type                   string `json:"type"`
	User                   string `json:"user"`
	Password               string `json:"password"`
	Host                   string `json:"host"`
	Port                   uint16 `json:"port"`
	Timeout                int    `json:"timeout"`
	DatabaseName           string `json:"database_name"`
	RequireSSL             bool   `json:"require_ssl"`
	CACert                 string `json:"ca_cert"`
	SkipHostnameValidation bool   `json:"skip_hostname_validation"`
}

// ConnectTimeout is the `timeout` key as a duration (seconds upstream).
func (c Config) ConnectTimeout() time.Duration {
	return time.Duration(c.Timeout) * time.Second
}

// Validate reports every problem in the object; keys are named relative to
// the object (the caller prefixes "database.").
func (c Config) Validate() []string {
	var p configfile.Problems
	switch c.Type {
	case TypePostgres, TypeMySQL:
		p.RequiredString("host", c.Host)
		p.Required("port", c.Port != 0)
		p.RequiredString("user", c.User)
		if c.RequireSSL && c.CACert != "" {
			p.ReadableFile("ca_cert", c.CACert)
		}
	case TypeSQLite:
	case "":
		p.Required("type", false)
	default:
		p.Addf("type: database type %s is not supported", c.Type)
	}
	p.RequiredString("database_name", c.DatabaseName)
	p.Min("timeout", c.Timeout, 1)
	return p.List()
}

// Pool holds the connection pool settings shared by every SQL-backed daemon.
type Pool struct {
	MaxOpenConnections            int `json:"max_open_connections"`
	MaxIdleConnections            int `json:"max_idle_connections"`
	ConnectionsMaxLifetimeSeconds int `json:"connections_max_lifetime_seconds"`
}

// Validate reports negative settings.
func (p Pool) Validate() []string {
	var probs configfile.Problems
	probs.Min("max_open_connections", p.MaxOpenConnections, 0)
	probs.Min("max_idle_connections", p.MaxIdleConnections, 0)
	probs.Min("connections_max_lifetime_seconds", p.ConnectionsMaxLifetimeSeconds, 0)
	return probs.List()
}
