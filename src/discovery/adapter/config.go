// Package adapter is bosh-dns-adapter: the HTTP handler bosh-dns calls for
// internal domains (apps.internal), which asks the service-discovery-controller
// over mutual TLS for a name's IPs and answers in bosh-dns's DNS-over-HTTP JSON.
package adapter

import (
	"net"
	"time"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// DefaultReadHeaderTimeout applies when read_header_timeout is not set.
const DefaultReadHeaderTimeout = 5 * time.Second

// Config is bosh-dns-adapter's JSON config file (-c), keys as upstream.
type Config struct {
	Address                           string             `json:"address"`
	Port                              string             `json:"port"`
	ReadHeaderTimeout                 discovery.Duration `json:"read_header_timeout"`
	ServiceDiscoveryControllerAddress string             `json:"service_discovery_controller_address"`
	ServiceDiscoveryControllerPort    string             `json:"service_discovery_controller_port"`
	ClientCert                        string             `json:"client_cert"`
	ClientKey                         string             `json:"client_key"`
	CACert                            string             `json:"ca_cert"`
	MetronPort                        int                `json:"metron_port"`
	MetricsEmitSeconds                int                `json:"metrics_emit_seconds"`
	LogLevelAddress                   string             `json:"log_level_address"`
	LogLevelPort                      int                `json:"log_level_port"`
	// InternalServiceMeshDomains and InternalRouteVIPRange are validated
	// and otherwise unused, as upstream.
	InternalServiceMeshDomains []string `json:"internal_service_mesh_domains"`
	InternalRouteVIPRange      string   `json:"internal_route_vip_range"`
	// netman: dual stack (package overlay6). Non-empty: AAAA queries are
	// answered with the IPv6 overlay addresses of the controller's IPv4
	// answers; empty answers AAAA with no records, as upstream.
	IPv6OverlayNetwork string `json:"ipv6_overlay_network"`
}

// LoadConfig reads and validates a config file, naming every problem.
func LoadConfig(path string) (Config, error) {
	return configfile.Load(path, Config{})
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.RequiredString("address", c.Address)
	// A port that is set but not 1-65535 fails at start-up, as upstream's
	// listen did (exit 1, "Address (...) not available"), not here (exit 2).
	p.RequiredString("port", c.Port)
	if c.ReadHeaderTimeout < 0 {
		p.Addf("read_header_timeout: must not be negative")
	}
	p.RequiredString("service_discovery_controller_address", c.ServiceDiscoveryControllerAddress)
	discovery.CheckPort(&p, "service_discovery_controller_port", c.ServiceDiscoveryControllerPort)
	p.ReadableFile("client_cert", c.ClientCert)
	p.ReadableFile("client_key", c.ClientKey)
	p.ReadableFile("ca_cert", c.CACert)
	p.Min("metron_port", c.MetronPort, 1)
	p.Min("metrics_emit_seconds", c.MetricsEmitSeconds, 1)
	p.RequiredString("log_level_address", c.LogLevelAddress)
	p.Port("log_level_port", c.LogLevelPort)
	if c.InternalRouteVIPRange == "" {
		p.Required("internal_route_vip_range", false)
	} else if _, _, err := net.ParseCIDR(c.InternalRouteVIPRange); err != nil {
		p.Addf("internal_route_vip_range: invalid CIDR address: %s", c.InternalRouteVIPRange)
	}
	if _, err := overlay6.ParseConfig(c.IPv6OverlayNetwork); err != nil {
		p.Addf("%s: %v", overlay6.ConfigKey, err)
	}
	return p.Err()
}

// ipv6 is the dual-stack overlay (the zero Network when IPv4 only);
// Validate has checked it.
func (c Config) ipv6() overlay6.Network {
	n, _ := overlay6.ParseConfig(c.IPv6OverlayNetwork)
	return n
}

func (c Config) readHeaderTimeout() time.Duration {
	if c.ReadHeaderTimeout == 0 {
		return DefaultReadHeaderTimeout
	}
	return time.Duration(c.ReadHeaderTimeout)
}
