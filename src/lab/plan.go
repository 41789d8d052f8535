package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/cli/policyapi"
	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/gardennet"
	"github.com/netman-release/netman/src/iptableslogger"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	silkcni "github.com/netman-release/netman/src/silk/cni"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/daemon"
	"github.com/netman-release/netman/src/sqldb"
)

// Plan is what every config of a lab depends on: where its files go, the
// underlay addresses, the control plane's ports and certificates. The
// config methods build each daemon's own Config (written as JSON, so the
// keys are the daemon's); the lab and celltest share them.
type Plan struct {
	Dir    string // configs, databases, logs
	Bins   string // the built binaries (also the CNI plugin dir)
	Prefix string // the underlay /24 as "10.244.N."
	Ports  Ports
	Certs  Certs
	// PolicyDB and SilkDB are the `database` objects of the policy servers
	// and of silk-controller.
	PolicyDB, SilkDB sqldb.Config
	// PollIntervalSeconds is silk-daemon's poll_interval.
	PollIntervalSeconds int
	// C2CLogging turns on c2c logging in the wrapper (DENY_C2C_) and the
	// agents (OK_).
	C2CLogging bool
	// ASGLogging turns on ASG logging (iptables_asg_logging) in the wrapper
	// and the agents: DENY_ for denied egress, OK_ for every accepted
	// connection's first packet.
	ASGLogging bool
	// Backend is the cells' enforcement_backend, written into every agent's
	// and wrapper's config: BackendIPTables (also "") or BackendNFTables.
	Backend string
	// TokensFile is policy-server's auth_tokens_file.
	TokensFile string
	// DNSServers is the cells' cni-wrapper-plugin dns_servers: the
	// link-local resolvers containers may reach (the lab's DNS front end,
	// the part bosh-dns plays). Empty renders [].
	DNSServers []string
	// IPv6 is the deployment's IPv6 overlay network (overlay6); set, every
	// cell not marked IPv4Only is dual-stack: its silk-daemon, agent and
	// wrapper configs carry ipv6_overlay_network. "" is IPv4 only.
	IPv6 string
	// Underlay6 is the underlay's IPv6 /64 on a dual-stack lab, as its
	// first four groups and "::" (Underlay6Prefix of Prefix): the bridge is
	// RootIP6 on it, each cell UnderlayIP6, so that containers' IPv6
	// egress, masqueraded to their cell's address, reaches the outside
	// service. "" leaves the underlay IPv4 only.
	Underlay6 string
	// UICells is policy-server's ui_cells: the agents' debug servers its
	// /ui/ page reads (AgentDebugURL of each cell). Empty renders [].
	UICells []string
}

// Ports are the control plane's ports in the root namespace. The API ports
// of silk-controller and policy-server-internal listen on RootIP (the
// cells reach them over the underlay), everything else on 127.0.0.1.
type Ports struct {
	ControllerAPI, ControllerHealth, ControllerDebug int
	External, ExternalDebug                          int
	Internal, InternalHealth, InternalDebug          int
	// Service discovery: service-discovery-controller's mTLS API (on
	// RootIP) and log-level server, and NATS (on RootIP).
	Discovery, DiscoveryLogLevel, NATS int
	// The fake Cloud Controller (on 127.0.0.1): public API and UAA,
	// internal API, the lab's write API.
	CC, CCInternal, CCAdmin int
}

// DefaultPorts are upstream's defaults.
func DefaultPorts() Ports {
	return Ports{
		ControllerAPI: 4103, ControllerHealth: 19683, ControllerDebug: 46455,
		External: 4002, ExternalDebug: 31821,
		Internal: 4003, InternalHealth: 31946, InternalDebug: 31945,
		Discovery: 8054, DiscoveryLogLevel: 8055, NATS: 4222,
		CC: 9024, CCInternal: 9023, CCAdmin: 9025,
	}
}

// Certs are the certificate files the daemons load.
type Certs struct {
	CA                            string
	ControllerCert, ControllerKey string // silk-controller's server pair
	InternalCert, InternalKey     string // policy-server-internal's server pair
	DaemonCert, DaemonKey         string // silk-daemon's client pair
	AgentCert, AgentKey           string // vxlan-policy-agent's client pair
	DiscoveryCert, DiscoveryKey   string // service-discovery-controller's server pair
	AdapterCert, AdapterKey       string // bosh-dns-adapter's client pair
}

// TreeCerts are the files of a netman-certs tree (mtls.WriteTree) in dir.
func TreeCerts(dir string) Certs {
	f := func(job, name string) string { return filepath.Join(dir, job, name) }
	return Certs{
		CA:             filepath.Join(dir, "ca.crt"),
		ControllerCert: f("silk-controller", "server.crt"), ControllerKey: f("silk-controller", "server.key"),
		InternalCert: f("policy-server-internal", "server.crt"), InternalKey: f("policy-server-internal", "server.key"),
		DaemonCert: f("silk-daemon", "client.crt"), DaemonKey: f("silk-daemon", "client.key"),
		AgentCert: f("vxlan-policy-agent", "client.crt"), AgentKey: f("vxlan-policy-agent", "client.key"),
		DiscoveryCert: f("service-discovery-controller", "server.crt"), DiscoveryKey: f("service-discovery-controller", "server.key"),
		AdapterCert: f("bosh-dns-adapter", "client.crt"), AdapterKey: f("bosh-dns-adapter", "client.key"),
	}
}

// SQLite is a `database` object for an SQLite file.
func SQLite(path string) sqldb.Config {
	return sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: path, Timeout: 10}
}

// The values of Plan.Backend (and of the lab's --backend): the
// enforcement_backend values of vxlan-policy-agent and cni-wrapper-plugin.
const (
	BackendIPTables = cniwrapper.BackendIPTables
	BackendNFTables = cniwrapper.BackendNFTables
)

// Backends are the enforcement backends, the default first.
var Backends = []string{BackendIPTables, BackendNFTables}

// backend is Backend with the default spelled out, so every config says
// which backend its cell runs.
func (p *Plan) backend() string {
	if p.Backend == "" {
		return BackendIPTables
	}
	return p.Backend
}

// RootIP is the root namespace's address on the underlay, where the
// control plane listens for the cells.
func (p *Plan) RootIP() string { return p.Prefix + "1" }

// Underlay6Prefix is the ULA /64 a dual-stack lab gives its underlay
// beside the IPv4 /24 prefix ("10.244.7." → "fd6c:6162:f4:7::"): one /64
// per IPv4 underlay, so labs on different underlays never share it.
func Underlay6Prefix(prefix string) string {
	var a, b, c int
	fmt.Sscanf(prefix, "%d.%d.%d.", &a, &b, &c)
	return fmt.Sprintf("fd6c:6162:%x:%x::", b, c)
}

// RootIP6 is the root namespace's IPv6 address on a dual-stack underlay
// (the bridge's, the cells' IPv6 default gateway); "" without Underlay6.
func (p *Plan) RootIP6() string {
	if p.Underlay6 == "" {
		return ""
	}
	return p.Underlay6 + "1"
}

// ExternalURL is policy-server's external API (plain HTTP on 127.0.0.1).
func (p *Plan) ExternalURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Ports.External) }

// PolicyAPI is a client of policy-server's external API with the bearer
// token (one in TokensFile).
func (p *Plan) PolicyAPI(token string) *policyapi.Client {
	return policyapi.New(p.ExternalURL(), nil, "Bearer "+token, "netman-lab")
}

// InternalURL is policy-server-internal's API on the underlay.
func (p *Plan) InternalURL() string {
	return fmt.Sprintf("https://%s:%d", p.RootIP(), p.Ports.Internal)
}

// CellPlan is one cell's place in the plan.
type CellPlan struct {
	Index      int    // from 1
	Dir        string // the cell's files
	UnderlayIP string
	// UnderlayIP6 is the cell's address on the IPv6 underlay (Underlay6);
	// "" when the underlay is IPv4 only.
	UnderlayIP6 string
	// IPv4Only keeps the cell IPv4-only in a dual-stack plan (a cell not
	// yet rolled over).
	IPv4Only bool
}

// ipv6 is the cell's ipv6_overlay_network: "" on an IPv4-only cell.
func (p *Plan) ipv6(c CellPlan) string {
	if c.IPv4Only {
		return ""
	}
	return p.IPv6
}

// Cell is cell i (from 1): files under Dir/cell<i>, underlay Prefix+(10+i)
// and, on an IPv6 underlay, Underlay6 with 10+i in its last group.
func (p *Plan) Cell(i int) CellPlan {
	c := CellPlan{Index: i, Dir: filepath.Join(p.Dir, fmt.Sprintf("cell%d", i)), UnderlayIP: p.Prefix + strconv.Itoa(10+i)}
	if p.Underlay6 != "" {
		c.UnderlayIP6 = p.Underlay6 + strconv.Itoa(10+i)
	}
	return c
}

// Datastore is the cell's container metadata store.
func (c CellPlan) Datastore() string { return filepath.Join(c.Dir, "container-metadata", "store.json") }

// LockFile is the cell's iptables lock, shared by every writer on the cell.
func (c CellPlan) LockFile() string { return filepath.Join(c.Dir, "iptables.lock") }

// Values every config of the lab shares.
const (
	logPrefix      = "cfnetworking"
	logLevel       = "debug"
	metronPort     = 3457
	metronAddress  = "127.0.0.1:3457"
	overlayNetwork = "10.255.0.0/16"
	vtepName       = "silk-vtep"
	silkDaemonPort = 23954 // silk-daemon's network-info (health_check_port)
	agentDebugPort = 8721
	agentForcePort = 8722
)

// SilkController is silk-controller.json.
func (p *Plan) SilkController() controller.Config {
	return controller.Config{
		DebugServerPort: p.Ports.ControllerDebug, ListenHost: p.RootIP(), ListenPort: p.Ports.ControllerAPI,
		CACertFile: p.Certs.CA, ServerCertFile: p.Certs.ControllerCert, ServerKeyFile: p.Certs.ControllerKey,
		Network: overlayNetwork, SubnetPrefixLength: 24, Database: p.SilkDB,
		LeaseExpirationSeconds: 3600, MetronPort: metronPort, HealthCheckPort: p.Ports.ControllerHealth,
		MetricsEmitSeconds:        controller.DefaultMetricsEmitSeconds,
		StalenessThresholdSeconds: controller.DefaultStalenessThresholdSeconds,
		LogPrefix:                 logPrefix, LogLevel: logLevel,
	}
}

// SilkDaemon is the cell's silk-daemon.json.
func (p *Plan) SilkDaemon(c CellPlan) daemon.Config {
	return daemon.Config{
		UnderlayIP: c.UnderlayIP, SubnetPrefixLength: 24, OverlayNetwork: daemon.OverlayNetwork{overlayNetwork},
		HealthCheckPort: silkDaemonPort, VTEPName: vtepName,
		ConnectivityServerURL: fmt.Sprintf("https://%s:%d", p.RootIP(), p.Ports.ControllerAPI),
		CACertFile:            p.Certs.CA, ClientCertFile: p.Certs.DaemonCert, ClientKeyFile: p.Certs.DaemonKey,
		VNI: 1, VTEPPort: 4789, PollInterval: p.PollIntervalSeconds, DebugServerPort: 22233,
		Datastore: filepath.Join(c.Dir, "silk-store.json"), PartitionToleranceSeconds: 3600,
		ClientTimeoutSeconds: 5, MetronPort: metronPort, LogPrefix: logPrefix, LogLevel: logLevel,
		IPv6OverlayNetwork: p.ipv6(c),
	}
}

// Tokens is policy-server's auth_tokens_file content: token as network.admin.
func Tokens(token string) map[string]auth.FileEntry {
	return map[string]auth.FileEntry{token: {UserName: "admin", Scopes: []string{auth.ScopeAdmin}}}
}

// PolicyServer is policy-server.json: the external API as plain HTTP on
// 127.0.0.1 with file-based tokens instead of UAA.
func (p *Plan) PolicyServer() external.Config {
	return external.Config{
		ListenHost: "127.0.0.1", ListenPort: p.Ports.External, LogPrefix: logPrefix, LogLevel: logLevel,
		DebugServerHost: "127.0.0.1", DebugServerPort: p.Ports.ExternalDebug,
		AuthTokensFile: p.TokensFile, ClientConfig: auth.ClientConfig{RequestTimeout: 5}, Database: p.PolicyDB, DatabaseMigrationTimeout: 60,
		TagLength: 2, MetronAddress: metronAddress, CleanupInterval: 3600, MaxPolicies: 150,
		UICells: append([]string{}, p.UICells...),
	}
}

// PolicyServerInternal is policy-server-internal.json (mTLS on the underlay).
func (p *Plan) PolicyServerInternal() internalapi.Config {
	return internalapi.Config{
		LogPrefix: logPrefix, LogLevel: logLevel, ListenHost: p.RootIP(), InternalListenPort: p.Ports.Internal,
		DebugServerHost: "127.0.0.1", DebugServerPort: p.Ports.InternalDebug, HealthCheckPort: p.Ports.InternalHealth,
		CACertFile: p.Certs.CA, ServerCertFile: p.Certs.InternalCert, ServerKeyFile: p.Certs.InternalKey,
		Database: p.PolicyDB, TagLength: 2, MetronAddress: metronAddress, RequestTimeout: 5,
	}
}

// LabAgent is the agent config the lab writes: Agent's, with the per-app
// series on the debug server's /metrics and the cell's flow log at
// /app-flows (docs/observability.md). celltest
// starts its agents from Agent, without them: an agent counts a container
// from its next cycle, and the e2e tests compare whole rulesets.
func (p *Plan) LabAgent(c CellPlan) agent.Config {
	cfg := p.Agent(c)
	cfg.EnableAppMetrics = true
	cfg.FlowLogFile = c.IPTablesLog()
	return cfg
}

// Agent is the cell's vxlan-policy-agent.json.
func (p *Plan) Agent(c CellPlan) agent.Config {
	return agent.Config{
		PollInterval: 5, EnableASGSyncing: true, ASGPollInterval: 60,
		CNIDatastorePath: c.Datastore(), PolicyServerURL: p.InternalURL(), VNI: 1, MetronAddress: metronAddress,
		CACertFile: p.Certs.CA, ClientCertFile: p.Certs.AgentCert, ClientKeyFile: p.Certs.AgentKey,
		ClientTimeoutSeconds: 5, IPTablesLockFile: c.LockFile(),
		DebugServerHost: "0.0.0.0", DebugServerPort: agentDebugPort, LogLevel: logLevel, LogPrefix: logPrefix,
		IPTablesC2CLogging: p.C2CLogging, IPTablesASGLogging: p.ASGLogging, IPTablesAcceptedUDPLogsPerSec: 100, IPTablesDeniedLogsPerSec: 1,
		EnforcementBackend:       p.backend(),
		ForcePolicyPollCycleHost: "127.0.0.1", ForcePolicyPollCyclePort: agentForcePort,
		OverlayNetwork: overlayNetwork, UnderlayIPs: []string{c.UnderlayIP},
		DenyNetworks:        agent.DenyNetworks{Always: []string{}, Running: []string{}, Staging: []string{}},
		OutboundConnections: agent.OutboundConns{Burst: 1000, RatePerSec: 100},
		IPv6OverlayNetwork:  p.ipv6(c),
	}
}

// AgentDebugURL is the cell's vxlan-policy-agent debug server as the root
// namespace reaches it: the agent binds every address of the cell (its
// 127.0.0.1, as on a real cell, and its underlay address, for `netman
// trace`, `graph` and `ui` on the host).
func (c CellPlan) AgentDebugURL() string {
	return fmt.Sprintf("http://%s:%d", c.UnderlayIP, agentDebugPort)
}

// NetmanEnv is the environment of the netman CLI against the lab: the
// external API and token, the names file, policy-server-internal with the
// agents' client pair, and the cells' agent debug servers.
func (p *Plan) NetmanEnv(token, namesFile string, cells []CellPlan) map[string]string {
	urls := make([]string, len(cells))
	for i, c := range cells {
		urls[i] = c.AgentDebugURL()
	}
	return map[string]string{
		"NETMAN_API": p.ExternalURL(), "NETMAN_TOKEN": token, "NETMAN_APP_NAMES": namesFile,
		"NETMAN_INTERNAL_API": p.InternalURL(), "NETMAN_INTERNAL_CA": p.Certs.CA,
		"NETMAN_INTERNAL_CERT": p.Certs.AgentCert, "NETMAN_INTERNAL_KEY": p.Certs.AgentKey,
		"NETMAN_CELLS": strings.Join(urls, ","),
	}
}

// Wrapper is the cell's cni-wrapper-plugin network config (silk's
// conflist entry, delegating to silk-cni), every path inside the cell's dir.
func (p *Plan) Wrapper(c CellPlan) cniwrapper.Config {
	return cniwrapper.Config{
		CNIVersion: "1.0.0", Name: "cni-wrapper", Type: "cni-wrapper-plugin",
		Datastore:                       c.Datastore(),
		IPTablesLockFile:                c.LockFile(),
		InstanceAddress:                 c.UnderlayIP,
		NoMasqueradeCIDRRange:           overlayNetwork,
		TemporaryUnderlayInterfaceNames: []string{},
		UnderlayIPs:                     []string{c.UnderlayIP},
		IPTablesC2CLogging:              p.C2CLogging,
		IPTablesASGLogging:              p.ASGLogging,
		EnforcementBackend:              p.backend(),
		IPTablesDeniedLogsPerSec:        1, IPTablesAcceptedUDPLogsPerSec: 100,
		IngressTag: "ffff0000", VTEPName: vtepName,
		PolicyAgentForcePollAddress: fmt.Sprintf("127.0.0.1:%d", agentForcePort),
		DNSServers:                  append([]string{}, p.DNSServers...), HostTCPServices: []string{}, HostUDPServices: []string{},
		DenyNetworks: cniwrapper.DenyNetworks{Always: []string{}, Running: []string{}, Staging: []string{}},
		Delegate: object(silkcni.NetConf{
			PluginConf: types.PluginConf{CNIVersion: "1.0.0", Name: "silk", Type: "silk-cni"}, DaemonPort: silkDaemonPort,
			DataDir: filepath.Join(c.Dir, "host-local"), Datastore: filepath.Join(c.Dir, "silk-store.json"),
		}),
		OutConn:            cniwrapper.OutConn{Burst: 1000, RatePerSec: 100},
		IPv6OverlayNetwork: p.ipv6(c),
		// The IPv6 twins of port mappings go to the cell's IPv6 underlay
		// address (a dual-stack cell with no IPv6 underlay has none).
		InstanceAddressIPv6: p.instanceAddress6(c),
	}
}

// instanceAddress6 is the cell's instance_address_ipv6: its IPv6 underlay
// address on a dual-stack cell, else "".
func (p *Plan) instanceAddress6(c CellPlan) string {
	if p.ipv6(c) == "" {
		return ""
	}
	return c.UnderlayIP6
}

// object is v, a config struct, as a JSON object: what the wrapper's
// delegate holds. Such a struct always marshals.
func object(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	return m
}

// ConflistName is the file name of the cell's conflist in CNIConfigDir.
const ConflistName = "cni-wrapper-plugin.conflist"

// GardenDir holds the cell's garden-external-networker files: adapter.json,
// the CNI config dir, libcni's cache, the bind mounts and the port state.
func (c CellPlan) GardenDir() string { return filepath.Join(c.Dir, "garden-cni") }

// CNIConfigDir is the cell's cni_config_dir (it holds only the conflist).
func (c CellPlan) CNIConfigDir() string { return filepath.Join(c.GardenDir(), "cni") }

// Conflist is a CNI network configuration list, as libcni reads it.
type Conflist struct {
	CNIVersion   string              `json:"cniVersion"`
	Name         string              `json:"name"`
	DisableCheck bool                `json:"disableCheck"`
	Plugins      []cniwrapper.Config `json:"plugins"`
}

// Conflist is silk-cni's cni-wrapper-plugin.conflist with the cell's
// wrapper as its one plugin (libcni gives it the list's name and
// cniVersion).
func (p *Plan) Conflist(c CellPlan) Conflist {
	w := p.Wrapper(c)
	w.CNIVersion, w.Name = "", ""
	return Conflist{CNIVersion: "1.0.0", Name: "cni-wrapper", DisableCheck: true, Plugins: []cniwrapper.Config{w}}
}

// Adapter is the cell's garden-external-networker adapter.json: the
// garden-cni job's keys and values, paths under GardenDir, plus netman's
// cni_cache_dir so that libcni's cache stays there too.
func (p *Plan) Adapter(c CellPlan) gardennet.Config {
	dir := c.GardenDir()
	proxyUID := 0
	return gardennet.Config{
		CniPluginDir: p.Bins, CniConfigDir: c.CNIConfigDir(),
		CNICacheDir:   filepath.Join(dir, "cni-cache"),
		BindMountDir:  filepath.Join(dir, "container-netns"),
		StateFilePath: filepath.Join(dir, "external-networker-state.json"),
		StartPort:     61000, TotalPorts: 5000, LogPrefix: logPrefix, SearchDomains: []string{},
		IPTablesLockFile: c.LockFile(),
		ProxyPort:        15001, ProxyUID: &proxyUID,
	}
}

// IPTablesLogger is the cell's iptables-logger.json: the kernel log of
// every namespace (/dev/kmsg, once nf_log_all_netns is on) enriched from
// the cell's container metadata into output.
func (p *Plan) IPTablesLogger(c CellPlan, output string) iptableslogger.Config {
	return iptableslogger.Config{
		KernelLogFile: "/dev/kmsg", ContainerMetadataFile: c.Datastore(), OutputLogFile: output,
		MetronAddress: metronAddress, HostIP: c.UnderlayIP, HostGUID: fmt.Sprintf("cell-%d", c.Index),
		LogTimestampFormat: iptableslogger.FormatRFC3339,
	}
}

// LabIPTablesLogger is the iptables-logger config the lab writes:
// IPTablesLogger's, writing to the cell's IPTablesLog, with flow logs on
// (docs/observability.md#flow-logs). celltest's loggers, started from
// IPTablesLogger, write packet events only: its tests compare whole logs.
func (p *Plan) LabIPTablesLogger(c CellPlan) iptableslogger.Config {
	cfg := p.IPTablesLogger(c, c.IPTablesLog())
	cfg.EnableFlowLogs, cfg.FlowLogsPerSec = true, labFlowLogsPerSec
	return cfg
}

// labFlowLogsPerSec is the lab's flow_logs_per_sec: the BOSH job's default.
const labFlowLogsPerSec = 1000

// IPTablesLog is the cell's iptables-logger output_log_file: the packet
// events and flow records of the cell's containers.
func (c CellPlan) IPTablesLog() string { return filepath.Join(c.Dir, "iptables.log") }

// WriteJSON writes v as indented JSON to dir/name and returns the path.
func WriteJSON(dir, name string, v any) (string, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", err
	}
	return path, nil
}
