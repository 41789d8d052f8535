// Package daemon is silk-daemon: it holds the cell's overlay lease, owns the
// VXLAN VTEP (`silk-vtep`) and, every poll, makes the routes, ARP and FDB
// entries on that VTEP match the other cells' leases — computing the desired
// state with a pure planner and writing only the difference. It also serves
// the network-info endpoint silk-cni reads, and implements silk-teardown.
package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"time"

	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Config is silk-daemon's (and silk-teardown's) JSON config file, keys as
// upstream's client-config.json.
type Config struct {
	UnderlayIP                string         `json:"underlay_ip"`
	VxlanInterfaceName        string         `json:"vxlan_interface_name"`
	SubnetPrefixLength        int            `json:"subnet_prefix_length"`
	OverlayNetwork            OverlayNetwork `json:"overlay_network"`
	HealthCheckPort           int            `json:"health_check_port"`
	VTEPName                  string         `json:"vtep_name"`
	ConnectivityServerURL     string         `json:"connectivity_server_url"`
	CACertFile                string         `json:"ca_cert_file"`
	ClientCertFile            string         `json:"client_cert_file"`
	ClientKeyFile             string         `json:"client_key_file"`
	VNI                       int            `json:"vni"`
	VTEPPort                  int            `json:"vtep_port"`
	PollInterval              int            `json:"poll_interval"`
	DebugServerPort           int            `json:"debug_server_port"`
	Datastore                 string         `json:"datastore"`
	PartitionToleranceSeconds int            `json:"partition_tolerance_seconds"`
	ClientTimeoutSeconds      int            `json:"client_timeout_seconds"`
	MetronPort                int            `json:"metron_port"`
	LogPrefix                 string         `json:"log_prefix"`
	LogLevel                  string         `json:"log_level"`
	SingleIPOnly              bool           `json:"single_ip_only"`
	// MTU, when positive, is the VTEP's MTU at creation instead of the
	// kernel's default (underlay MTU − 50), e.g. 1350 under IPsec.
	MTU int `json:"mtu"`
	// VTEPChecksumOffload leaves tx-checksum-ip-generic on on the VTEP
	// (the kernel's default, upstream's behaviour); off by default (see
	// VTEPOffloads).
	VTEPChecksumOffload bool `json:"vtep_checksum_offload"`
	// IPv6OverlayNetwork, when set, makes the cell dual-stack: the
	// deployment's IPv6 overlay /96 (overlay6). Empty is IPv4 only.
	IPv6OverlayNetwork string `json:"ipv6_overlay_network,omitempty"`
}

// OverlayNetwork is the overlay CIDR. Upstream renders it as a string (up to
// v3.53) or as a list (later releases); both are accepted, but netman
// supports exactly one network.
type OverlayNetwork []string

// UnmarshalJSON accepts "10.255.0.0/16" or ["10.255.0.0/16"].
func (o *OverlayNetwork) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(bytes.TrimSpace(b), []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*o = OverlayNetwork{s}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("overlay_network: want a CIDR string or a list of them: %w", err)
	}
	*o = list
	return nil
}

// MarshalJSON writes the single network as a string, the v3.53 shape.
func (o OverlayNetwork) MarshalJSON() ([]byte, error) {
	if len(o) == 1 {
		return json.Marshal(o[0])
	}
	return json.Marshal([]string(o))
}

// DefaultLogPrefix is used when log_prefix is absent.
const DefaultLogPrefix = logging.DefaultPrefix

// Limits the kernel imposes on the values.
const (
	maxVNI       = 1<<24 - 1
	maxIfNameLen = 15
	minMTU       = 68 // IPv4's minimum
)

// LoadConfig reads and validates a config file. Read and parse errors keep
// upstream's wording ("reading file …", "unmarshaling contents: …"); an
// invalid file names every problem.
func LoadConfig(path string) (Config, error) {
	c := Config{LogPrefix: DefaultLogPrefix}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading file %s: %w", path, err)
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return Config{}, fmt.Errorf("unmarshaling contents: %w", err)
	}
	return c, c.Validate()
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.IPv4("underlay_ip", c.UnderlayIP)
	if len(c.VxlanInterfaceName) > maxIfNameLen {
		p.Addf("vxlan_interface_name: %q is longer than %d bytes", c.VxlanInterfaceName, maxIfNameLen)
	}
	overlay, overlayOK := c.validateOverlay(&p)
	if p.Range("subnet_prefix_length", c.SubnetPrefixLength, 1, 30) && overlayOK && overlay.Bits() >= c.SubnetPrefixLength {
		p.Addf("overlay_network/subnet_prefix_length: overlay prefix %d must be smaller than subnet prefix %d", overlay.Bits(), c.SubnetPrefixLength)
	}
	p.Port("health_check_port", c.HealthCheckPort)
	switch {
	case c.VTEPName == "":
		p.Required("vtep_name", false)
	case len(c.VTEPName) > maxIfNameLen:
		p.Addf("vtep_name: %q is longer than %d bytes", c.VTEPName, maxIfNameLen)
	}
	if c.ConnectivityServerURL == "" {
		p.Required("connectivity_server_url", false)
	} else if u, err := url.Parse(c.ConnectivityServerURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf("connectivity_server_url: %q is not an http(s) URL", c.ConnectivityServerURL)
	}
	p.ReadableFile("ca_cert_file", c.CACertFile)
	p.ReadableFile("client_cert_file", c.ClientCertFile)
	p.ReadableFile("client_key_file", c.ClientKeyFile)
	if c.VNI < 1 || c.VNI > maxVNI {
		p.Addf("vni: must be between 1 and %d (got %d)", maxVNI, c.VNI)
	}
	p.Port("vtep_port", c.VTEPPort)
	p.Min("poll_interval", c.PollInterval, 1)
	p.Port("debug_server_port", c.DebugServerPort)
	p.RequiredString("datastore", c.Datastore)
	p.Min("partition_tolerance_seconds", c.PartitionToleranceSeconds, 1)
	p.Min("client_timeout_seconds", c.ClientTimeoutSeconds, 1)
	p.Port("metron_port", c.MetronPort)
	p.RequiredString("log_prefix", c.LogPrefix)
	configfile.ParseOptional(&p, "log_level", c.LogLevel, logging.ParseLevel)
	if c.MTU != 0 && (c.MTU < minMTU || c.MTU > 65535) {
		p.Addf("mtu: must be 0 (kernel default) or between %d and 65535 (got %d)", minMTU, c.MTU)
	}
	if _, err := overlay6.ParseConfig(c.IPv6OverlayNetwork); err != nil {
		p.Addf("%s: %v", overlay6.ConfigKey, err)
	}
	return p.Err()
}

// IPv6 is the IPv6 overlay network, the zero Network on an IPv4-only cell.
// Only meaningful on a validated config.
func (c Config) IPv6() overlay6.Network {
	n, _ := overlay6.ParseConfig(c.IPv6OverlayNetwork)
	return n
}

func (c Config) validateOverlay(p *configfile.Problems) (netip.Prefix, bool) {
	switch len(c.OverlayNetwork) {
	case 0:
		p.Required("overlay_network", false)
		return netip.Prefix{}, false
	case 1:
		return p.CIDR("overlay_network", c.OverlayNetwork[0])
	default:
		p.Addf("overlay_network: netman supports exactly one overlay network (got %d)", len(c.OverlayNetwork))
		return netip.Prefix{}, false
	}
}

// Overlay is the overlay network, masked (upstream reads the network part of
// the CIDR). Only meaningful on a validated config.
func (c Config) Overlay() netip.Prefix {
	if len(c.OverlayNetwork) == 0 {
		return netip.Prefix{}
	}
	p, _ := netip.ParsePrefix(c.OverlayNetwork[0])
	return p.Masked()
}

func (c Config) pollInterval() time.Duration { return time.Duration(c.PollInterval) * time.Second }

func (c Config) partitionTolerance() time.Duration {
	return time.Duration(c.PartitionToleranceSeconds) * time.Second
}

func (c Config) clientTimeout() time.Duration {
	return time.Duration(c.ClientTimeoutSeconds) * time.Second
}
