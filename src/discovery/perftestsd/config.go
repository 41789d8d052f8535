// Package perftest is performance-test-sd: it checks that the NATS servers
// of a deployment deliver service discovery's registrations to every
// service-discovery-controller, and that those registrations do not load
// NATS much more than the router's. It reads upstream's config.json.
package perftestsd

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Config is the job's config.json, with upstream's keys.
type Config struct {
	// NatsURL is a comma-separated list of NATS hosts (no scheme, no port).
	NatsURL            string `json:"nats_url"`
	NatsUsername       string `json:"nats_username"`
	NatsPassword       string `json:"nats_password"`
	NatsMonitoringPort int    `json:"nats_monitoring_port"`
	NatsPort           int    `json:"nats_port"`
	NumMessages        int    `json:"num_messages"`
	NumPublishers      int    `json:"num_publishers"`
}

// LoadConfig reads and validates config.json.
func LoadConfig(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	var c Config
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("parsing config %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("invalid config %s: %w", path, err)
	}
	return c, nil
}

// Hosts are the NATS hosts of nats_url, trimmed.
func (c Config) Hosts() []string {
	var hosts []string
	for _, h := range strings.Split(c.NatsURL, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// Validate reports every invalid value at once.
func (c Config) Validate() error {
	var errs []error
	if len(c.Hosts()) == 0 {
		errs = append(errs, errors.New("nats_url: no NATS host"))
	}
	for _, h := range c.Hosts() {
		if strings.Contains(h, "://") || strings.ContainsAny(h, "/ ") {
			errs = append(errs, fmt.Errorf("nats_url: %q is not a host name or address", h))
		}
	}
	port := func(name string, v int) {
		if v < 1 || v > 65535 {
			errs = append(errs, fmt.Errorf("%s must be a port between 1 and 65535 (got %d)", name, v))
		}
	}
	port("nats_port", c.NatsPort)
	port("nats_monitoring_port", c.NatsMonitoringPort)
	if c.NumMessages < 1 {
		errs = append(errs, fmt.Errorf("num_messages must be at least 1 (got %d)", c.NumMessages))
	}
	if c.NumPublishers < 1 {
		errs = append(errs, fmt.Errorf("num_publishers must be at least 1 (got %d)", c.NumPublishers))
	}
	return errors.Join(errs...)
}
