// Package healthchecker is the companion process upstream's jobs run next
// to a daemon (healthchecker-release's `healthchecker`, vendored upstream as
// silk-healthchecker and cf-networking-healthchecker): it polls the daemon's
// HTTP health endpoint and exits after three failures in a row, after
// counting the failure in a file. Monit then runs the job's restart script,
// which restarts the daemon unless the count has reached 10.
//
// The config keys are upstream's; netman's templates render them as JSON,
// which is also YAML, so the file keeps upstream's name healthchecker.yml.
package healthchecker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
)

// Duration is a duration written as Go text ("10s") or as nanoseconds.
type Duration time.Duration

// UnmarshalJSON accepts "10s" or 10000000000.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("want a duration such as \"10s\": %s", b)
	}
	*d = Duration(n)
	return nil
}

// Endpoint is healthcheck_endpoint: host and port, or a unix socket.
type Endpoint struct {
	Socket   string `json:"socket"`
	Host     string `json:"host"`
	Port     int    `json:"port"`
	Path     string `json:"path"`
	User     string `json:"user"`
	Password string `json:"password"`
}

// Config is healthchecker.yml.
type Config struct {
	ComponentName              string   `json:"component_name"`
	FailureCounterFile         string   `json:"failure_counter_file"`
	HealthCheckEndpoint        Endpoint `json:"healthcheck_endpoint"`
	HealthCheckPollInterval    Duration `json:"healthcheck_poll_interval"`
	HealthCheckTimeout         Duration `json:"healthcheck_timeout"`
	StartResponseDelayInterval Duration `json:"start_response_delay_interval"`
	StartupDelayBuffer         Duration `json:"startup_delay_buffer"`
	LogLevel                   string   `json:"log_level"`
}

// Upstream's defaults.
const (
	DefaultPollInterval  = 10 * time.Second
	DefaultTimeout       = 5 * time.Second
	DefaultStartDelay    = 30 * time.Second
	DefaultStartupBuffer = 5 * time.Second
	// Retries is how many failures in a row end the process.
	Retries = 3
)

// LoadConfig reads, checks and completes a config with upstream's
// messages and defaults.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("Could not read config file: %s, err: %w", path, err)
	}
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, fmt.Errorf("Could not unmarshal config file: %s, err: %w", path, err)
	}
	if err := c.validate(); err != nil {
		return Config{}, fmt.Errorf("Failed to validate config file: %s, err: %w", path, err)
	}
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&c.HealthCheckPollInterval, DefaultPollInterval)
	def(&c.HealthCheckTimeout, DefaultTimeout)
	def(&c.StartResponseDelayInterval, DefaultStartDelay)
	def(&c.StartupDelayBuffer, DefaultStartupBuffer)
	if c.LogLevel == "" {
		c.LogLevel = "info"
	}
	return c, nil
}

func (c *Config) validate() error {
	e := c.HealthCheckEndpoint
	switch {
	case c.ComponentName == "":
		return errors.New("Missing component_name")
	case e.Socket == "" && e.Host == "":
		return errors.New("Missing healthcheck endpoint host or socket")
	case e.Socket == "" && e.Port == 0:
		return errors.New("Missing healthcheck endpoint port or socket")
	case e.Socket != "" && e.Host != "":
		return errors.New("Cannot specify both healthcheck endpoint host and socket")
	case e.Socket != "" && e.Port != 0:
		return errors.New("Cannot specify both healthcheck endpoint port and socket")
	case c.FailureCounterFile == "":
		return errors.New("Missing failure_counter_file")
	}
	return nil
}

// Watchdog polls one endpoint.
type Watchdog struct {
	cfg    Config
	url    string
	client *http.Client
	logger lager.Logger
}

// New returns a watchdog for cfg and creates the failure counter file if
// it is missing.
func New(cfg Config, logger lager.Logger) (*Watchdog, error) {
	e := cfg.HealthCheckEndpoint
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(e.Host, strconv.Itoa(e.Port)), Path: e.Path}
	if e.User != "" || e.Password != "" {
		u.User = url.UserPassword(e.User, e.Password)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	if e.Socket != "" {
		u.Host = "unix"
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.Socket)
		}
	}
	f, err := os.OpenFile(cfg.FailureCounterFile, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cannot-create-failure-counter-file: %w", err)
	}
	_ = f.Close()
	return &Watchdog{
		cfg:    cfg,
		url:    u.String(),
		client: &http.Client{Timeout: time.Duration(cfg.HealthCheckTimeout), Transport: tr},
		logger: logger,
	}, nil
}

// Run waits out the daemon's start-up delay, then checks every poll
// interval. It returns nil when ctx ends, and the last error after Retries
// failures in a row (the failure counter incremented). A success resets the
// counter to 0.
func (w *Watchdog) Run(ctx context.Context) error {
	delay := time.Duration(w.cfg.StartResponseDelayInterval + w.cfg.StartupDelayBuffer)
	w.logger.Debug("sleeping-before-first-check", lager.Data{"sleep_time_seconds": delay.Seconds()})
	if !lifecycle.Sleep(ctx, delay) {
		return nil
	}
	w.logger.Info("Starting")
	failures := 0
	for {
		if !lifecycle.Sleep(ctx, time.Duration(w.cfg.HealthCheckPollInterval)) {
			w.logger.Info("Context done, exiting")
			return nil
		}
		err := w.Check(ctx)
		if ctx.Err() != nil {
			w.logger.Info("Context done, exiting")
			return nil
		}
		if err == nil {
			failures = 0
			if err := w.setCounter(0); err != nil {
				w.logger.Error("resetting-failure-count", err, lager.Data{"file": w.cfg.FailureCounterFile})
			}
			continue
		}
		failures++
		w.logger.Debug("Received error", lager.Data{"error": err.Error(), "attempt": failures})
		if failures >= Retries {
			if err := w.incrementCounter(); err != nil {
				w.logger.Error("incrementing-failure-count", err, lager.Data{"file": w.cfg.FailureCounterFile})
			}
			return err
		}
	}
}

// Check is one request: healthy means 200.
func (w *Watchdog) Check(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.url, nil)
	if err != nil {
		return err
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d received from healthcheck endpoint (200 expected)", resp.StatusCode)
	}
	return nil
}

func (w *Watchdog) setCounter(n int) error {
	return os.WriteFile(w.cfg.FailureCounterFile, []byte(strconv.Itoa(n)+"\n"), 0o644)
}

// incrementCounter adds one to the file; text that is not a number counts
// as 0, as upstream.
func (w *Watchdog) incrementCounter() error {
	b, err := os.ReadFile(w.cfg.FailureCounterFile)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		n = 0
	}
	return w.setCounter(n + 1)
}
