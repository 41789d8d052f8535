// Package bbr backs up and restores the policy server's database for BOSH
// Backup and Restore (the bbr-cfnetworkingdb job). Its config file is the
// backup-and-restore SDK's connection config, which the job renders from the
// policy server's dbconn link. PostgreSQL and MySQL are dumped and restored
// with the client tools and the flags of the SDK's database-backup-restorer,
// so an artifact made here restores with the SDK and the other way round;
// SQLite, netman's embedded database, which the SDK does not know, is
// copied with SQLite's own consistent-snapshot mechanisms.
package bbr

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
)

// Adapters the config's `adapter` key accepts: the SDK's two and netman's
// embedded database.
const (
	AdapterPostgres = "postgres"
	AdapterMySQL    = "mysql"
	AdapterSQLite   = "sqlite"
)

// Config is the SDK's connection config (config/config.json of
// bbr-cfnetworkingdb). For sqlite, Database is the database file's path and
// the network keys are unused.
type Config struct {
	Username string     `json:"username"`
	Password string     `json:"password"`
	Host     string     `json:"host"`
	Port     int        `json:"port"`
	Adapter  string     `json:"adapter"`
	Database string     `json:"database"`
	Tables   []string   `json:"tables,omitempty"`
	TLS      *TLSConfig `json:"tls,omitempty"`
}

// TLSConfig is the SDK's `tls` object: the server's CA, optionally a client
// certificate, and whether the server's name is checked.
type TLSConfig struct {
	SkipHostVerify bool    `json:"skip_host_verify"`
	Cert           TLSCert `json:"cert"`
}

// TLSCert holds PEM text, not paths.
type TLSCert struct {
	CA          string `json:"ca"`
	Certificate string `json:"certificate,omitempty"`
	PrivateKey  string `json:"private_key,omitempty"`
}

// LoadConfig reads and validates a config file.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config file: %w", err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("could not parse config json: %w", err)
	}
	return c, c.Validate()
}

// Validate applies the SDK's checks plus the ones a
// dump of the wrong database would otherwise pass: a database name, and for
// the network adapters a host and port.
func (c Config) Validate() error {
	if !slices.Contains([]string{AdapterPostgres, AdapterMySQL, AdapterSQLite}, c.Adapter) {
		return fmt.Errorf("unsupported adapter %q", c.Adapter)
	}
	if c.Tables != nil && len(c.Tables) == 0 {
		return errors.New("tables specified but empty")
	}
	if c.TLS != nil {
		switch {
		case c.TLS.Cert.CA == "":
			return errors.New("TLS block specified without tls.cert.ca")
		case c.TLS.Cert.Certificate != "" && c.TLS.Cert.PrivateKey == "":
			return errors.New("tls.cert.certificate specified but not tls.cert.private_key")
		case c.TLS.Cert.Certificate == "" && c.TLS.Cert.PrivateKey != "":
			return errors.New("tls.cert.private_key specified but not tls.cert.certificate")
		}
	}
	if c.Database == "" {
		return errors.New("database: must be set")
	}
	if c.Adapter == AdapterSQLite {
		if c.Tables != nil || c.TLS != nil {
			return errors.New("sqlite: tables and tls do not apply to a database file")
		}
		return nil
	}
	if c.Host == "" {
		return errors.New("host: must be set")
	}
	if c.Port < 1 || c.Port > 65535 {
		return fmt.Errorf("port: %d is not a TCP port", c.Port)
	}
	return nil
}
