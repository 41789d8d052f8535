// Package agent is vxlan-policy-agent: on every cell it turns the policies
// of the apps running there into iptables rules (package c2c) and applies
// the apps' security groups to their egress chains (package asg). It reads
// the container metadata store, talks mTLS to policy-server-internal,
// serves upstream's force and debug endpoints, and reports upstream's
// metrics.
//
// Propagation: the agent long-polls policies_last_updated when the server
// offers it (netman's policy-server-internal does), so a policy change
// reaches the cell within one watcher tick of the server, and falls back to
// upstream's plain jittered polling otherwise. It also reruns the cycle
// when the metadata store changes. Failures keep the rules in force
// (fail static) and are retried with backoff.
package agent

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/configfile"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/rules"
	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// Config is vxlan-policy-agent.json, keys as upstream's.
type Config struct {
	PollInterval                  int           `json:"poll_interval"`
	EnableASGSyncing              bool          `json:"enable_asg_syncing"`
	ASGPollInterval               int           `json:"asg_poll_interval"`
	CNIDatastorePath              string        `json:"cni_datastore_path"`
	PolicyServerURL               string        `json:"policy_server_url"`
	VNI                           int           `json:"vni"`
	MetronAddress                 string        `json:"metron_address"`
	CACertFile                    string        `json:"ca_cert_file"`
	ClientCertFile                string        `json:"client_cert_file"`
	ClientKeyFile                 string        `json:"client_key_file"`
	ClientTimeoutSeconds          int           `json:"client_timeout_seconds"`
	IPTablesLockFile              string        `json:"iptables_lock_file"`
	DebugServerHost               string        `json:"debug_server_host"`
	DebugServerPort               int           `json:"debug_server_port"`
	LogLevel                      string        `json:"log_level"`
	LogPrefix                     string        `json:"log_prefix"`
	IPTablesC2CLogging            bool          `json:"iptables_c2c_logging"`
	IPTablesASGLogging            bool          `json:"iptables_asg_logging"`
	IPTablesAcceptedUDPLogsPerSec int           `json:"iptables_accepted_udp_logs_per_sec"`
	IPTablesDeniedLogsPerSec      int           `json:"iptables_denied_logs_per_sec"`
	EnableOverlayIngressRules     bool          `json:"enable_overlay_ingress_rules"`
	ForcePolicyPollCycleHost      string        `json:"force_policy_poll_cycle_host"`
	ForcePolicyPollCyclePort      int           `json:"force_policy_poll_cycle_port"`
	DisableContainerNetworkPolicy bool          `json:"disable_container_network_policy"`
	OverlayNetwork                string        `json:"overlay_network"`
	UnderlayIPs                   []string      `json:"underlay_ips"`
	DenyNetworks                  DenyNetworks  `json:"deny_networks"`
	OutboundConnections           OutboundConns `json:"outbound_connections"`
	Loggregator                   Loggregator   `json:"loggregator"`

	// netman: iptables binaries to use ("", "nft" or "legacy"); must match
	// the cni-wrapper-plugin's iptables_flavor.
	IPTablesFlavor string `json:"iptables_flavor"`
	// netman: "iptables" (upstream's chains, the default) or "nftables"
	// (netman's inet netman table, docs/nftables.md); must match the
	// cni-wrapper-plugin's enforcement_backend.
	EnforcementBackend string `json:"enforcement_backend"`
	// netman: iptables mode only; each destination container's policy
	// rules in a vpa-dst-<ip> chain of their own (c2c.PlanChains).
	IPTablesPerDestinationChains bool `json:"iptables_per_destination_chains"`
	// netman: per-app network metrics (package appmetrics): counting
	// rules for every app container, exported on the debug server's
	// /metrics and as envelopes. app_metrics_max_series caps the series
	// (0: appmetrics.DefaultMaxSeries).
	EnableAppMetrics    bool `json:"enable_app_metrics"`
	AppMetricsMaxSeries int  `json:"app_metrics_max_series"`
	// netman: the cell's iptables-logger output_log_file. Set, the debug
	// server serves each app's recent flow records from it at
	// /app-flows (observe.PathFlows), for `netman ui` and the policy
	// server's /ui/ page.
	FlowLogFile string `json:"flow_log_file"`
	// netman: dual stack (package overlay6). Non-empty: every container
	// also has the IPv6 address this /96 maps its IPv4 address to, and
	// c2c policies and ASGs are enforced for IPv6 as well.
	IPv6OverlayNetwork string `json:"ipv6_overlay_network"`
	// netman: 0 disables long-polling policies_last_updated even when
	// the server offers it; unset means DefaultLongPollWaitSeconds.
	LongPollWaitSeconds *int `json:"long_poll_wait_seconds"`
}

// DenyNetworks are the operator's deny_networks.
type DenyNetworks struct {
	Always  []string `json:"always"`
	Running []string `json:"running"`
	Staging []string `json:"staging"`
}

// OutboundConns is outbound_connections (upstream renders no dry_run here).
type OutboundConns struct {
	Limit      bool `json:"limit"`
	Logging    bool `json:"logging"`
	Burst      int  `json:"burst"`
	RatePerSec int  `json:"rate_per_sec"`
	DryRun     bool `json:"dry_run"`
}

// Loggregator is upstream's loggregator block; netman sends the app log
// lines through metron_address as dropsonde log envelopes instead of the
// v2 gRPC API, so only the source settings are used.
type Loggregator struct {
	UseV2API   bool   `json:"loggregator_use_v2_api"`
	APIPort    int    `json:"loggregator_api_port"`
	CAPath     string `json:"loggregator_ca_path"`
	CertPath   string `json:"loggregator_cert_path"`
	KeyPath    string `json:"loggregator_key_path"`
	JobDeploy  string `json:"loggregator_job_deployment"`
	JobName    string `json:"loggregator_job_name"`
	JobIndex   string `json:"loggregator_job_index"`
	JobIP      string `json:"loggregator_job_ip"`
	JobOrigin  string `json:"loggregator_job_origin"`
	SourceID   string `json:"loggregator_source_id"`
	InstanceID string `json:"loggregator_instance_id"`
}

// DefaultLongPollWaitSeconds is how long one long-poll waits on the server
// (below policy-server-internal's 30 s cap).
const DefaultLongPollWaitSeconds = 25

// LoadConfig reads and validates the config file; an invalid file names
// every problem.
func LoadConfig(path string) (Config, error) {
	c := Config{LogPrefix: logging.DefaultPrefix}
	if err := configfile.LoadJSON(path, &c); err != nil {
		return Config{}, err
	}
	return c, c.Validate()
}

// Validate checks every key and returns one error listing all problems.
func (c Config) Validate() error {
	var p configfile.Problems
	p.Min("poll_interval", c.PollInterval, 1)
	if c.EnableASGSyncing || c.ASGPollInterval != 0 {
		p.Min("asg_poll_interval", c.ASGPollInterval, 1)
	}
	p.RequiredString("cni_datastore_path", c.CNIDatastorePath)
	if c.PolicyServerURL == "" {
		p.Required("policy_server_url", false)
	} else if u, err := url.Parse(c.PolicyServerURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		p.Addf("policy_server_url: %q is not an http(s) URL", c.PolicyServerURL)
	}
	p.Min("vni", c.VNI, 1)
	if _, err := c.metronPort(); err != nil {
		p.Addf("metron_address: %v", err)
	}
	p.ReadableFile("ca_cert_file", c.CACertFile)
	p.ReadableFile("client_cert_file", c.ClientCertFile)
	p.ReadableFile("client_key_file", c.ClientKeyFile)
	p.Min("client_timeout_seconds", c.ClientTimeoutSeconds, 1)
	p.RequiredString("iptables_lock_file", c.IPTablesLockFile)
	p.RequiredString("debug_server_host", c.DebugServerHost)
	p.Port("debug_server_port", c.DebugServerPort)
	p.RequiredString("log_prefix", c.LogPrefix)
	if c.LogLevel != "" {
		if _, err := logging.ParseLevel(c.LogLevel); err != nil {
			p.Addf("log_level: %v", err)
		}
	}
	p.Min("iptables_accepted_udp_logs_per_sec", c.IPTablesAcceptedUDPLogsPerSec, 1)
	if c.IPTablesDeniedLogsPerSec < 0 {
		p.Addf("iptables_denied_logs_per_sec: must not be negative (got %d)", c.IPTablesDeniedLogsPerSec)
	}
	p.RequiredString("force_policy_poll_cycle_host", c.ForcePolicyPollCycleHost)
	p.Port("force_policy_poll_cycle_port", c.ForcePolicyPollCyclePort)
	if c.DisableContainerNetworkPolicy || c.OverlayNetwork != "" {
		p.CIDR("overlay_network", c.OverlayNetwork)
	}
	if _, err := overlay6.ParseConfig(c.IPv6OverlayNetwork); err != nil {
		p.Addf("%s: %v", overlay6.ConfigKey, err)
	}
	for _, ip := range c.UnderlayIPs {
		if _, err := netip.ParseAddr(ip); err != nil {
			p.Addf("underlay_ips: %q is not an IP address", ip)
		}
	}
	// IPv6 deny networks only on a dual-stack cell (they go to the
	// ip6tables twin of the asg chains, or the inet chain's ip6 reject).
	if _, err := rules.ParseDenyNetworksDual(c.DenyNetworks.Always, c.DenyNetworks.Running, c.DenyNetworks.Staging, c.ipv6().Enabled()); err != nil {
		p.Addf("deny_networks: %v", err)
	}
	if o := c.OutboundConnections; o.Limit || o.DryRun {
		p.Min("outbound_connections.burst", o.Burst, 1)
		p.Min("outbound_connections.rate_per_sec", o.RatePerSec, 1)
	}
	if _, err := iptables.ParseFlavor(c.IPTablesFlavor); err != nil {
		p.Addf("iptables_flavor: %v", err)
	}
	if _, err := ParseBackend(c.EnforcementBackend); err != nil {
		p.Addf("enforcement_backend: %v", err)
	}
	if c.AppMetricsMaxSeries < 0 {
		p.Addf("app_metrics_max_series: must not be negative (got %d)", c.AppMetricsMaxSeries)
	}
	if c.LongPollWaitSeconds != nil && (*c.LongPollWaitSeconds < 0 || *c.LongPollWaitSeconds > 30) {
		p.Addf("long_poll_wait_seconds: must be between 0 and 30 (got %d)", *c.LongPollWaitSeconds)
	}
	return p.Err()
}

// Backend is the data plane the agent writes: enforcement_backend.
type Backend string

// The backends.
const (
	BackendIPTables Backend = "iptables"
	BackendNFTables Backend = "nftables"
)

// ParseBackend reads enforcement_backend; "" is the default, iptables.
func ParseBackend(s string) (Backend, error) {
	switch Backend(s) {
	case "", BackendIPTables:
		return BackendIPTables, nil
	case BackendNFTables:
		return BackendNFTables, nil
	}
	return "", fmt.Errorf("must be %q or %q (got %q)", BackendIPTables, BackendNFTables, s)
}

// ipv6 is the dual-stack overlay (the zero Network when IPv4 only);
// Validate has checked it.
func (c Config) ipv6() overlay6.Network {
	n, _ := overlay6.ParseConfig(c.IPv6OverlayNetwork)
	return n
}

// ip6tablesDriver is the ip6tables twin of the agent's iptables driver on
// a dual-stack cell: the flavor's ip6tables binaries, under the same lock
// file.
func (c Config) ip6tablesDriver() *iptables.Driver {
	flavor, _ := iptables.ParseFlavor(c.IPTablesFlavor)
	suffix := ""
	if flavor != iptables.FlavorDefault {
		suffix = "-" + string(flavor)
	}
	return iptables.New(iptables.Config{
		Flavor: flavor, LockFile: c.IPTablesLockFile,
		IPTables: "ip6tables" + suffix, Restore: "ip6tables" + suffix + "-restore", Save: "ip6tables" + suffix + "-save",
	})
}

func (c Config) backend() Backend {
	b, _ := ParseBackend(c.EnforcementBackend)
	return b
}

func (c Config) metronPort() (int, error) { return metrics.MetronPort(c.MetronAddress) }

func (c Config) pollInterval() time.Duration { return time.Duration(c.PollInterval) * time.Second }

func (c Config) asgPollInterval() time.Duration {
	return time.Duration(c.ASGPollInterval) * time.Second
}

func (c Config) clientTimeout() time.Duration {
	return time.Duration(c.ClientTimeoutSeconds) * time.Second
}

func (c Config) longPollWait() time.Duration {
	if c.LongPollWaitSeconds == nil {
		return DefaultLongPollWaitSeconds * time.Second
	}
	return time.Duration(*c.LongPollWaitSeconds) * time.Second
}

// c2cRules are the values that shape the c2c rules.
func (c Config) c2cRules() c2cRules {
	return c2cRules{
		planner: c2c.Inputs{
			AcceptedUDPLogsPerSec: c.IPTablesAcceptedUDPLogsPerSec,
			DisableNetworkPolicy:  c.DisableContainerNetworkPolicy,
			OverlayNetwork:        c.OverlayNetwork,
			IPv6:                  c.ipv6(),
		},
		ingressRouter: c.EnableOverlayIngressRules,
		logging:       c.IPTablesC2CLogging,
	}
}

// longPoll is the timing of the long-polls of both version stamps: a
// request may take client_timeout_seconds longer than its wait.
func (c Config) longPoll() longPollTiming {
	return longPollTiming{wait: c.longPollWait(), grace: c.clientTimeout()}
}

func (c Config) forceAddr() string {
	return net.JoinHostPort(c.ForcePolicyPollCycleHost, strconv.Itoa(c.ForcePolicyPollCyclePort))
}

func (c Config) debugAddr() string {
	return net.JoinHostPort(c.DebugServerHost, strconv.Itoa(c.DebugServerPort))
}
