// Package asgsyncer is policy-server-asg-syncer: it copies every
// application security group from Cloud Controller into the policy
// server's security_groups table, one transaction per change, while holding
// a lock (in Diego's locket, or in the policy database itself) so that only
// one syncer writes at a time.
package asgsyncer

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/sqldb"
)

// Component is the job name: log component and metrics origin.
const Component = "policy-server-asg-syncer"

// Config is policy-server-asg-syncer's JSON config file, keys as upstream
// (spec §9.3) plus upstream's embedded locket client keys.
type Config struct {
	ASGPollIntervalSeconds int          `json:"asg_poll_interval_seconds"`
	RetryDeadlineSeconds   int          `json:"retry_deadline_seconds"`
	UUID                   string       `json:"uuid"`
	Database               sqldb.Config `json:"database"`
	CCInternalURL          string       `json:"cc_internal_url"`
	CCInternalCA           string       `json:"cc_internal_ca_cert"`
	CCInternalClientCert   string       `json:"cc_internal_client_cert"`
	CCInternalClientKey    string       `json:"cc_internal_client_key"`
	LogLevel               string       `json:"log_level"`
	LogPrefix              string       `json:"log_prefix"`
	MetronAddress          string       `json:"metron_address"`
	// The UAA and public Cloud Controller keys; request_timeout is a
	// netman extension here (upstream's calls had no timeout and a hung
	// Cloud Controller stalled the syncer for good).
	auth.ClientConfig

	// Locket (upstream's locket.ClientLocketConfig). An empty
	// locket_address makes the syncer lock in the policy database instead
	// (netman extension; upstream always needs locket).
	LocketAddress                string  `json:"locket_address"`
	LocketCACertFile             string  `json:"locket_ca_cert_file"`
	LocketClientCertFile         string  `json:"locket_client_cert_file"`
	LocketClientKeyFile          string  `json:"locket_client_key_file"`
	LocketClientKeepaliveTime    Seconds `json:"locket_client_keepalive_time"`
	LocketClientKeepaliveTimeout Seconds `json:"locket_client_keepalive_timeout"`
}

// Defaults of keys upstream's template always renders; a hand-written file
// may leave them out.
const (
	DefaultLogPrefix            = "cfnetworking"
	DefaultRetryDeadlineSeconds = 300
	DefaultRequestTimeout       = 30
)

// locketAddress is upstream's template check of locket_address.
var locketAddress = regexp.MustCompile(`^[a-z0-9.-]+:[0-9]+$`)

// LoadConfig reads and validates a config file, naming every problem.
// Errors read "reading config: ...", "parsing config ...: ..." or
// "invalid config: ...", as upstream's.
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{
		LogPrefix:            DefaultLogPrefix,
		RetryDeadlineSeconds: DefaultRetryDeadlineSeconds,
		ClientConfig:         auth.ClientConfig{RequestTimeout: DefaultRequestTimeout},
	})
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	// Upstream accepts 0 and then polls in a tight loop; a poll interval
	// must be at least a second (upstream's template requires it too).
	p.Min("asg_poll_interval_seconds", c.ASGPollIntervalSeconds, 1)
	p.Min("retry_deadline_seconds", c.RetryDeadlineSeconds, 1)
	p.RequiredString("uuid", c.UUID)
	p.Merge("database.", c.Database.Validate())
	c.ClientConfig.Check(&p)
	p.HTTPURL("cc_internal_url", c.CCInternalURL)
	// The internal endpoint is mutual TLS: all three files are needed.
	p.ReadableFile("cc_internal_ca_cert", c.CCInternalCA)
	p.ReadableFile("cc_internal_client_cert", c.CCInternalClientCert)
	p.ReadableFile("cc_internal_client_key", c.CCInternalClientKey)
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	p.RequiredString("log_prefix", c.LogPrefix)
	configfile.Parse(&p, "metron_address", c.MetronAddress, metrics.MetronPort)
	if c.UseLocket() {
		if !locketAddress.MatchString(c.LocketAddress) {
			p.Addf("locket_address: the locket_address is invalid (got %q)", c.LocketAddress)
		}
		p.ReadableFile("locket_ca_cert_file", c.LocketCACertFile)
		p.ReadableFile("locket_client_cert_file", c.LocketClientCertFile)
		p.ReadableFile("locket_client_key_file", c.LocketClientKeyFile)
	}
	p.Min("request_timeout", c.RequestTimeout, 1)
	return p.Err()
}

// UseLocket reports whether the lock is taken in locket (else in the
// policy database).
func (c Config) UseLocket() bool { return c.LocketAddress != "" }

// PollInterval is asg_poll_interval_seconds as a duration.
func (c Config) PollInterval() time.Duration {
	return time.Duration(c.ASGPollIntervalSeconds) * time.Second
}

// RetryDeadline is retry_deadline_seconds as a duration.
func (c Config) RetryDeadline() time.Duration {
	return time.Duration(c.RetryDeadlineSeconds) * time.Second
}

// Seconds is a duration written as a number of seconds or as a Go
// duration string ("10s"); locket's keepalive keys have been both.
type Seconds time.Duration

// MarshalJSON writes the duration as a number of seconds, the form
// UnmarshalJSON reads (a time.Duration's own would be nanoseconds).
func (s Seconds) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(s).Seconds())
}

// UnmarshalJSON implements json.Unmarshaler.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		v, err := strconv.ParseFloat(n.String(), 64)
		if err != nil {
			return err
		}
		*s = Seconds(time.Duration(v * float64(time.Second)))
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("want seconds or a duration, got %s", b)
	}
	d, err := time.ParseDuration(str)
	if err != nil {
		return err
	}
	*s = Seconds(d)
	return nil
}
