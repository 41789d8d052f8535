package lab

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Plan is what every config of a lab depends on: where its files go, the
// underlay addresses, the control plane's ports and certificates. The
// config methods render upstream's keys; the lab and celltest share them.
type Plan struct {
	Dir    string // configs, databases, logs
	Bins   string // the built binaries (also the CNI plugin dir)
	Prefix string // the underlay /24 as "10.244.N."
	Ports  Ports
	Certs  Certs
	// PolicyDB and SilkDB are the `database` objects of the policy servers
	// and of silk-controller.
	PolicyDB, SilkDB map[string]any
	// PollIntervalSeconds is silk-daemon's poll_interval.
	PollIntervalSeconds int
	// C2CLogging turns on c2c logging in the wrapper (DENY_C2C_) and the
	// agents (OK_).
	C2CLogging bool
	// TokensFile is policy-server's auth_tokens_file.
	TokensFile string
	// DNSServers is the cells' cni-wrapper-plugin dns_servers: the
	// link-local resolvers containers may reach (the lab's DNS front end,
	// the part bosh-dns plays). Empty renders [].
	DNSServers []string
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
func SQLite(path string) map[string]any {
	return map[string]any{"type": "sqlite", "database_name": path, "timeout": 10}
}

// RootIP is the root namespace's address on the underlay, where the
// control plane listens for the cells.
func (p *Plan) RootIP() string { return p.Prefix + "1" }

// ExternalURL is policy-server's external API (plain HTTP on 127.0.0.1).
func (p *Plan) ExternalURL() string { return fmt.Sprintf("http://127.0.0.1:%d", p.Ports.External) }

// InternalURL is policy-server-internal's API on the underlay.
func (p *Plan) InternalURL() string {
	return fmt.Sprintf("https://%s:%d", p.RootIP(), p.Ports.Internal)
}

// CellPlan is one cell's place in the plan.
type CellPlan struct {
	Index      int    // from 1
	Dir        string // the cell's files
	UnderlayIP string
}

// Cell is cell i (from 1): files under Dir/cell<i>, underlay Prefix+(10+i).
func (p *Plan) Cell(i int) CellPlan {
	return CellPlan{Index: i, Dir: filepath.Join(p.Dir, fmt.Sprintf("cell%d", i)), UnderlayIP: p.Prefix + strconv.Itoa(10+i)}
}

// Datastore is the cell's container metadata store.
func (c CellPlan) Datastore() string { return filepath.Join(c.Dir, "container-metadata", "store.json") }

// LockFile is the cell's iptables lock, shared by every writer on the cell.
func (c CellPlan) LockFile() string { return filepath.Join(c.Dir, "iptables.lock") }

// SilkController is silk-controller.json.
func (p *Plan) SilkController() map[string]any {
	return map[string]any{
		"debug_server_port": p.Ports.ControllerDebug, "listen_host": p.RootIP(), "listen_port": p.Ports.ControllerAPI,
		"ca_cert_file": p.Certs.CA, "server_cert_file": p.Certs.ControllerCert, "server_key_file": p.Certs.ControllerKey,
		"network": "10.255.0.0/16", "subnet_prefix_length": 24, "database": p.SilkDB,
		"lease_expiration_seconds": 3600, "metron_port": 3457, "health_check_port": p.Ports.ControllerHealth,
		"log_prefix": "cfnetworking", "log_level": "debug",
	}
}

// SilkDaemon is the cell's silk-daemon.json.
func (p *Plan) SilkDaemon(c CellPlan) map[string]any {
	return map[string]any{
		"underlay_ip": c.UnderlayIP, "subnet_prefix_length": 24, "overlay_network": "10.255.0.0/16",
		"health_check_port": 23954, "vtep_name": "silk-vtep",
		"connectivity_server_url": fmt.Sprintf("https://%s:%d", p.RootIP(), p.Ports.ControllerAPI),
		"ca_cert_file":            p.Certs.CA, "client_cert_file": p.Certs.DaemonCert, "client_key_file": p.Certs.DaemonKey,
		"vni": 1, "vtep_port": 4789, "poll_interval": p.PollIntervalSeconds, "debug_server_port": 22233,
		"datastore": filepath.Join(c.Dir, "silk-store.json"), "partition_tolerance_seconds": 3600,
		"client_timeout_seconds": 5, "metron_port": 3457, "log_prefix": "cfnetworking", "log_level": "debug",
	}
}

// Tokens is policy-server's auth_tokens_file content: token as network.admin.
func Tokens(token string) map[string]any {
	return map[string]any{token: map[string]any{"user_name": "admin", "scopes": []string{"network.admin"}}}
}

// PolicyServer is policy-server.json: the external API as plain HTTP on
// 127.0.0.1 with file-based tokens instead of UAA.
func (p *Plan) PolicyServer() map[string]any {
	return map[string]any{
		"listen_host": "127.0.0.1", "listen_port": p.Ports.External, "log_prefix": "cfnetworking", "log_level": "debug",
		"debug_server_host": "127.0.0.1", "debug_server_port": p.Ports.ExternalDebug,
		"auth_tokens_file": p.TokensFile, "request_timeout": 5, "database": p.PolicyDB, "database_migration_timeout": 60,
		"tag_length": 2, "metron_address": "127.0.0.1:3457", "cleanup_interval": 3600, "max_policies": 150,
	}
}

// PolicyServerInternal is policy-server-internal.json (mTLS on the underlay).
func (p *Plan) PolicyServerInternal() map[string]any {
	return map[string]any{
		"log_prefix": "cfnetworking", "log_level": "debug", "listen_host": p.RootIP(), "internal_listen_port": p.Ports.Internal,
		"debug_server_host": "127.0.0.1", "debug_server_port": p.Ports.InternalDebug, "health_check_port": p.Ports.InternalHealth,
		"ca_cert_file": p.Certs.CA, "server_cert_file": p.Certs.InternalCert, "server_key_file": p.Certs.InternalKey,
		"database": p.PolicyDB, "tag_length": 2, "metron_address": "127.0.0.1:3457", "request_timeout": 5,
	}
}

// Agent is the cell's vxlan-policy-agent.json.
func (p *Plan) Agent(c CellPlan) map[string]any {
	return map[string]any{
		"poll_interval": 5, "enable_asg_syncing": true, "asg_poll_interval": 60,
		"cni_datastore_path": c.Datastore(), "policy_server_url": p.InternalURL(), "vni": 1, "metron_address": "127.0.0.1:3457",
		"ca_cert_file": p.Certs.CA, "client_cert_file": p.Certs.AgentCert, "client_key_file": p.Certs.AgentKey,
		"client_timeout_seconds": 5, "iptables_lock_file": c.LockFile(),
		"debug_server_host": "127.0.0.1", "debug_server_port": 8721, "log_level": "debug", "log_prefix": "cfnetworking",
		"iptables_c2c_logging": p.C2CLogging, "iptables_asg_logging": false,
		"iptables_accepted_udp_logs_per_sec": 100, "iptables_denied_logs_per_sec": 1,
		"enable_overlay_ingress_rules": false, "force_policy_poll_cycle_host": "127.0.0.1", "force_policy_poll_cycle_port": 8722,
		"disable_container_network_policy": false, "overlay_network": "10.255.0.0/16", "underlay_ips": []string{c.UnderlayIP},
		"deny_networks":        map[string]any{"always": []string{}, "running": []string{}, "staging": []string{}},
		"outbound_connections": map[string]any{"limit": false, "logging": false, "burst": 1000, "rate_per_sec": 100},
	}
}

// Wrapper is the cell's cni-wrapper-plugin network config (silk's
// conflist entry, delegating to silk-cni), every path inside the cell's dir.
func (p *Plan) Wrapper(c CellPlan) map[string]any {
	return map[string]any{
		"cniVersion": "1.0.0", "name": "cni-wrapper", "type": "cni-wrapper-plugin",
		"datastore":                          c.Datastore(),
		"iptables_lock_file":                 c.LockFile(),
		"instance_address":                   c.UnderlayIP,
		"no_masquerade_cidr_range":           "10.255.0.0/16",
		"temporary_underlay_interface_names": []string{},
		"underlay_ips":                       []string{c.UnderlayIP},
		"iptables_asg_logging":               false, "iptables_c2c_logging": p.C2CLogging,
		"iptables_denied_logs_per_sec": 1, "iptables_accepted_udp_logs_per_sec": 100,
		"ingress_tag": "ffff0000", "vtep_name": "silk-vtep",
		"policy_agent_force_poll_address": "127.0.0.1:8722",
		"dns_servers":                     append([]string{}, p.DNSServers...), "host_tcp_services": []string{}, "host_udp_services": []string{},
		"deny_networks": map[string]any{"always": []string{}, "running": []string{}, "staging": []string{}},
		"delegate": map[string]any{
			"cniVersion": "1.0.0", "name": "silk", "type": "silk-cni", "daemonPort": 23954,
			"dataDir": filepath.Join(c.Dir, "host-local"), "datastore": filepath.Join(c.Dir, "silk-store.json"), "mtu": 0,
		},
		"outbound_connections": map[string]any{"limit": false, "logging": false, "burst": 1000, "rate_per_sec": 100, "dry_run": false},
	}
}

// ConflistName is the file name of the cell's conflist in CNIConfigDir.
const ConflistName = "cni-wrapper-plugin.conflist"

// GardenDir holds the cell's garden-external-networker files: adapter.json,
// the CNI config dir, libcni's cache, the bind mounts and the port state.
func (c CellPlan) GardenDir() string { return filepath.Join(c.Dir, "garden-cni") }

// CNIConfigDir is the cell's cni_config_dir (it holds only the conflist).
func (c CellPlan) CNIConfigDir() string { return filepath.Join(c.GardenDir(), "cni") }

// Conflist is silk-cni's cni-wrapper-plugin.conflist with the cell's
// wrapper as its one plugin (libcni injects name and cniVersion).
func (p *Plan) Conflist(c CellPlan) map[string]any {
	w := p.Wrapper(c)
	delete(w, "cniVersion")
	delete(w, "name")
	return map[string]any{"cniVersion": "1.0.0", "name": "cni-wrapper", "disableCheck": true, "plugins": []any{w}}
}

// Adapter is the cell's garden-external-networker adapter.json: the
// garden-cni job's keys and values, paths under GardenDir, plus netman's
// cni_cache_dir so that libcni's cache stays there too.
func (p *Plan) Adapter(c CellPlan) map[string]any {
	dir := c.GardenDir()
	return map[string]any{
		"cni_plugin_dir": p.Bins, "cni_config_dir": c.CNIConfigDir(),
		"cni_cache_dir":  filepath.Join(dir, "cni-cache"),
		"bind_mount_dir": filepath.Join(dir, "container-netns"),
		"state_file":     filepath.Join(dir, "external-networker-state.json"),
		"start_port":     61000, "total_ports": 5000, "log_prefix": "cfnetworking", "search_domains": []string{},
		"iptables_lock_file":  c.LockFile(),
		"proxy_redirect_cidr": "", "proxy_port": 15001, "proxy_uid": 0, "enable_ingress_proxy_redirect": false,
	}
}

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
