package sdcontroller

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/discovery"
)

// Config is service-discovery-controller's JSON config file (-c), keys as
// upstream's job template renders them.
type Config struct {
	Address                   string             `json:"address"`
	Port                      string             `json:"port"`
	Nats                      NatsConfig         `json:"nats"`
	Index                     string             `json:"index"`
	ServerCert                string             `json:"server_cert"`
	ServerKey                 string             `json:"server_key"`
	CACert                    string             `json:"ca_cert"`
	MetronPort                int                `json:"metron_port"`
	LogLevelAddress           string             `json:"log_level_address"`
	LogLevelPort              int                `json:"log_level_port"`
	StalenessThresholdSeconds int                `json:"staleness_threshold_seconds"`
	PruningIntervalSeconds    int                `json:"pruning_interval_seconds"`
	MetricsEmitSeconds        int                `json:"metrics_emit_seconds"`
	ResumePruningDelaySeconds int                `json:"resume_pruning_delay_seconds"`
	WarmDurationSeconds       int                `json:"warm_duration_seconds"`
	ReadHeaderTimeout         discovery.Duration `json:"read_header_timeout"`
}

// NatsConfig is the "nats" section: the servers to subscribe through and,
// with tls_enabled, the client certificate and CAs (file paths).
type NatsConfig struct {
	Hosts      []NatsHost `json:"hosts"`
	User       string     `json:"user"`
	Pass       string     `json:"pass"`
	TLSEnabled bool       `json:"tls_enabled"`
	CACerts    string     `json:"ca_certs"`
	CertChain  string     `json:"cert_chain"`
	PrivateKey string     `json:"private_key"`
}

// NatsHost is one NATS server.
type NatsHost struct {
	Hostname string `json:"hostname"`
	Port     int    `json:"port"`
}

// LoadConfig reads and validates a config file, naming every problem.
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{})
}

// Validate checks every key and returns one error listing all problems.
// It accepts whatever upstream's template renders; beyond upstream it also
// insists on NATS hosts and a log-level port, which the template always
// renders, instead of failing later or listening somewhere unexpected.
func (c Config) Validate() error {
	var p configfile.Problems
	p.RequiredString("address", c.Address)
	discovery.CheckPort(&p, "port", c.Port)
	p.ReadableFile("server_cert", c.ServerCert)
	p.ReadableFile("server_key", c.ServerKey)
	p.ReadableFile("ca_cert", c.CACert)
	p.Min("metron_port", c.MetronPort, 1)
	p.RequiredString("log_level_address", c.LogLevelAddress)
	p.Port("log_level_port", c.LogLevelPort)
	p.Min("staleness_threshold_seconds", c.StalenessThresholdSeconds, 1)
	p.Min("pruning_interval_seconds", c.PruningIntervalSeconds, 1)
	p.Min("metrics_emit_seconds", c.MetricsEmitSeconds, 1)
	p.Min("resume_pruning_delay_seconds", c.ResumePruningDelaySeconds, 0)
	p.Min("warm_duration_seconds", c.WarmDurationSeconds, 0)
	if c.ReadHeaderTimeout < 0 {
		p.Addf("read_header_timeout: must not be negative")
	}
	if len(c.Nats.Hosts) == 0 {
		p.Required("nats.hosts", false)
	}
	for i, h := range c.Nats.Hosts {
		p.RequiredString(fmt.Sprintf("nats.hosts[%d].hostname", i), h.Hostname)
		p.Port(fmt.Sprintf("nats.hosts[%d].port", i), h.Port)
	}
	if c.Nats.TLSEnabled {
		p.ReadableFile("nats.ca_certs", c.Nats.CACerts)
		p.ReadableFile("nats.cert_chain", c.Nats.CertChain)
		p.ReadableFile("nats.private_key", c.Nats.PrivateKey)
	}
	return p.Err()
}

// NatsServers returns the nats:// URL of every host, with the user and
// password when either is set.
func (c Config) NatsServers() []string {
	urls := make([]string, 0, len(c.Nats.Hosts))
	for _, h := range c.Nats.Hosts {
		u := url.URL{Scheme: "nats", Host: net.JoinHostPort(h.Hostname, strconv.Itoa(h.Port))}
		if c.Nats.User != "" || c.Nats.Pass != "" {
			u.User = url.UserPassword(c.Nats.User, c.Nats.Pass)
		}
		urls = append(urls, u.String())
	}
	return urls
}

// natsURL is NatsServers joined as nats.Connect takes them.
func (c Config) natsURL() string { return strings.Join(c.NatsServers(), ",") }
