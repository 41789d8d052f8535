package release

// upstreamJobs is the surface of upstream's jobs (cf-networking-release and
// silk-release 3.53, spec §4) that cf-deployment manifests and ops-files
// depend on: property names with their defaults, and links. netman's jobs
// must offer all of it; they may add to it.
var upstreamJobs = map[string]upstreamJob{
	"policy-server": {
		properties: map[string]any{
			"disable": false, "policy_cleanup_interval": 60, "max_policies_per_app_source": 150,
			"enable_space_developer_self_service": false, "listen_ip": "0.0.0.0", "listen_port": 4002,
			"debug_port": 31821, "enable_tls": false, "server_cert": noDefault, "server_key": noDefault,
			"uaa_client": "network-policy", "uaa_client_secret": noDefault, "uaa_ca": noDefault,
			"uaa_hostname": "uaa.service.cf.internal", "uaa_port": 8443, "cc_hostname": noDefault,
			"cc_port": noDefault, "skip_ssl_validation": false,
			"database.type": noDefault, "database.username": noDefault, "database.password": noDefault,
			"database.host": noDefault, "database.port": noDefault, "database.name": noDefault,
			"database.connect_timeout_seconds": 120, "database.require_ssl": false, "database.ca_cert": noDefault,
			"database.skip_hostname_validation": false, "max_open_connections": 200, "max_idle_connections": 10,
			"connections_max_lifetime_seconds": 3600, "tag_length": 2, "metron_port": 3457, "log_level": "info",
			"allowed_cors_domains": []any{},
		},
		provides: map[string]upstreamLink{
			"dbconn": {typ: "dbconn", properties: []string{"database.type", "database.username", "database.password",
				"database.port", "database.name", "database.host", "database.require_ssl", "database.ca_cert",
				"database.skip_hostname_validation"}},
			"tag_length": {typ: "tag_length", properties: []string{"tag_length"}},
		},
		consumes: map[string]upstreamLink{
			"database":                        {typ: "database", optional: true},
			"cloud_controller_https_endpoint": {typ: "cloud_controller_https_endpoint", optional: true},
		},
	},
	"policy-server-internal": {
		properties: map[string]any{
			"disable": false, "listen_ip": "0.0.0.0", "internal_listen_port": 4003, "debug_port": 31945,
			"health_check_port": 31946, "health_check_timeout_seconds": 5, "ca_cert": noDefault,
			"server_cert": noDefault, "server_key": noDefault, "metron_port": 3457, "log_level": "info",
			"database.connect_timeout_seconds": 120, "max_open_connections": 200, "max_idle_connections": 10,
			"connections_max_lifetime_seconds": 3600,
		},
		consumes: map[string]upstreamLink{
			"dbconn":     {typ: "dbconn"},
			"tag_length": {typ: "tag_length"},
			"database":   {typ: "database", optional: true},
		},
	},
	"policy-server-asg-syncer": {
		properties: map[string]any{
			"disable": false, "asg_poll_interval_seconds": 60, "retry_deadline_seconds": 300,
			"cc_hostname": noDefault, "cc_port": noDefault, "cc_internal.client_cert": noDefault,
			"cc_internal.client_key": noDefault, "database.connect_timeout_seconds": 120,
			"locket.address": "locket.service.cf.internal:8891", "locket.ca_cert": noDefault,
			"locket.client_cert": noDefault, "locket.client_key": noDefault, "log_level": "info",
			"metron_port": 3457, "skip_ssl_validation": false, "uaa_client": "network-policy",
			"uaa_client_secret": noDefault, "uaa_ca": noDefault, "uaa_hostname": "uaa.service.cf.internal",
			"uaa_port": 8443,
		},
		consumes: map[string]upstreamLink{
			"database":                        {typ: "database", optional: true},
			"dbconn":                          {typ: "dbconn"},
			"cloud_controller_https_endpoint": {typ: "cloud_controller_https_endpoint", optional: true},
			"cloud_controller_mtls_endpoint":  {typ: "cloud_controller_mtls_endpoint"},
		},
	},
	"silk-controller": {
		properties: map[string]any{
			"disable": false, "network": "10.255.0.0/16", "subnet_prefix_length": 24,
			"subnet_lease_expiration_hours": 168, "debug_port": 46455, "health_check_port": 19683,
			"health_check_timeout_seconds": 5, "listen_ip": "0.0.0.0", "listen_port": 4103,
			"ca_cert": noDefault, "server_cert": noDefault, "server_key": noDefault, "metron_port": 3457,
			"database.type": noDefault, "database.username": noDefault, "database.password": noDefault,
			"database.host": noDefault, "database.port": noDefault, "database.name": noDefault,
			"database.connect_timeout_seconds": 120, "database.require_ssl": false, "database.ca_cert": noDefault,
			"database.skip_hostname_validation": false, "max_open_connections": 200, "max_idle_connections": 10,
			"connections_max_lifetime_seconds": 3600,
		},
		provides: map[string]upstreamLink{
			"cf_network": {typ: "cf_network", properties: []string{"network", "subnet_prefix_length"}},
		},
		consumes: map[string]upstreamLink{"database": {typ: "database", optional: true}},
	},
	"silk-daemon": {
		properties: map[string]any{
			"disable": false, "vtep_port": 4789, "container_metadata_file_check_timeout": 600,
			"partition_tolerance_hours": 168, "lease_poll_interval_seconds": 30, "ca_cert": noDefault,
			"client_cert": noDefault, "client_key": noDefault, "listen_port": 23954, "debug_port": 22233,
			"metron_port": 3457, "silk_controller.hostname": "silk-controller.service.cf.internal",
			"silk_controller.listen_port": 4103, "vxlan_network": noDefault, "temporary_vxlan_interface": noDefault,
			"single_ip_only": false, "policy_server_url": "https://policy-server.service.cf.internal:4003",
			"logging.level": "info", "logging.format.timestamp": "rfc3339",
			"healthchecker.failure_counter_file": anyDefault,
		},
		consumes: map[string]upstreamLink{
			"cf_network": {typ: "cf_network"},
			"iptables":   {typ: "iptables", optional: true},
			// Upstream requires it (for silk-daemon-bootstrap); netman needs
			// it only with single_ip_only (the template says so).
			"vpa": {typ: "policy-agent", optional: true},
		},
	},
	"silk-datastore-syncer": {
		properties: map[string]any{
			"disable": false, "sync_interval_in_seconds": 30, "garden.address": "/var/vcap/data/garden/garden.sock",
			"garden.network": "unix", "log_level": "info",
		},
	},
	"silk-cni": {
		properties: map[string]any{
			"disable": false, "no_masquerade_cidr_range": "", "mtu": 0, "debug": false,
			"silk_daemon.listen_port": 23954, "iptables_logging": false, "dns_servers": []any{}, "rate": 0,
			"burst": 0, "iptables_denied_logs_per_sec": 1, "iptables_accepted_udp_logs_per_sec": 100,
			"temporary.underlay_interface_names": []any{}, "host_tcp_services": []any{},
			"host_udp_services": []any{}, "deny_networks.always": []any{}, "deny_networks.running": []any{},
			"deny_networks.staging": []any{}, "outbound_connections.limit": false,
			"outbound_connections.burst": 1000, "outbound_connections.rate_per_sec": 100,
			"outbound_connections.dry_run": false,
		},
		provides: map[string]upstreamLink{
			"cni_config": {typ: "cni_config", properties: []string{"iptables_logging", "iptables_denied_logs_per_sec",
				"deny_networks.always", "deny_networks.running", "deny_networks.staging",
				"outbound_connections.limit", "outbound_connections.burst", "outbound_connections.rate_per_sec",
				"outbound_connections.dry_run"}},
		},
		consumes: map[string]upstreamLink{
			"cf_network": {typ: "cf_network"},
			"vpa":        {typ: "policy-agent"},
		},
	},
	"vxlan-policy-agent": {
		properties: map[string]any{
			"disable": false, "iptables_logging": false,
			"policy_server.hostname": "policy-server.service.cf.internal", "policy_server.internal_listen_port": 4003,
			"policy_poll_interval_seconds": 5, "enable_asg_syncing": true, "asg_poll_interval_seconds": 60,
			"ca_cert": noDefault, "client_cert": noDefault, "client_key": noDefault, "metron_port": 3457,
			"debug_server_port": 8721, "log_level": "info", "iptables_accepted_udp_logs_per_sec": 100,
			"force_policy_poll_cycle_port": 8722, "enable_overlay_ingress_rules": false,
			"disable_container_network_policy": false, "loggregator.use_v2_api": false,
			"loggregator.v2_api_port": 3458, "loggregator.ca_cert": noDefault, "loggregator.cert": noDefault,
			"loggregator.key": noDefault,
		},
		provides: map[string]upstreamLink{
			"vpa": {typ: "policy-agent", properties: []string{"ca_cert", "client_cert", "client_key", "force_policy_poll_cycle_port"}},
		},
		consumes: map[string]upstreamLink{
			"cf_network": {typ: "cf_network"},
			"cni_config": {typ: "cni_config"},
			"iptables":   {typ: "iptables", optional: true},
		},
	},
	"netmon": {
		properties: map[string]any{
			"disable": false, "metron_address": "127.0.0.1:3457", "poll_interval": 30, "interface_name": "silk-vtep",
			"log_level": "info", "telemetry_enabled": false, "telemetry_interval": 600,
		},
		consumes: map[string]upstreamLink{"iptables": {typ: "iptables", optional: true}},
	},
	"iptables-logger": {
		properties: map[string]any{
			"disable": false, "kernel_log_file": "/var/log/kern.log", "metron_port": 3457,
			"logging.format.timestamp": "rfc3339",
		},
	},
	"garden-cni": {
		properties: map[string]any{
			"cni_plugin_dir": "/var/vcap/packages/cni/bin", "cni_config_dir": "/var/vcap/jobs/cni/config/cni",
			"nat_port_range_start": 61000, "nat_port_range_size": 5000, "search_domains": []any{},
			"experimental_enable_proxy_redirect": false, "experimental_proxy_redirect_cidr": "",
			"experimental_enable_ingress_proxy_redirect": false,
		},
		consumes: map[string]upstreamLink{
			"cloud_controller_container_networking_info": {typ: "cloud_controller_container_networking_info", optional: true},
		},
	},
	"bosh-dns-adapter": {
		properties: map[string]any{
			"cf_app_sd_disable": false, "address": "127.0.0.1", "port": 8053, "dnshttps.client.tls": noDefault,
			"dnshttps.server.ca": noDefault, "metron_port": 3457, "log_level_port": 8066,
			"log_level_address": "127.0.0.1", "healthchecker_log_level": "info", "internal_domains": []any{},
			"internal_service_mesh_domains": []any{}, "internal_route_vip_range": noDefault,
			"healthchecker.failure_counter_file": "/var/vcap/data/bosh-dns-adapter/counters/consecutive_healthchecker_failures.count",
		},
		consumes: map[string]upstreamLink{
			"service-discovery-controller":               {typ: "service-discovery-controller"},
			"cloud_controller_container_networking_info": {typ: "cloud_controller_container_networking_info", optional: true},
		},
	},
	"service-discovery-controller": {
		properties: map[string]any{
			"metron_port": 3457, "address": "0.0.0.0", "port": 8054, "staleness_threshold_seconds": 180,
			"route_emitter_interval_seconds": 60, "read_header_timeout": "30s", "dnshttps.server.tls": noDefault,
			"dnshttps.client.ca": noDefault, "log_level_port": 8055, "log_level_address": "127.0.0.1",
			"nats.user": noDefault, "nats.password": noDefault, "nats.port": noDefault, "nats.machines": noDefault,
			"nats.tls_enabled": false, "nats.ca_certs": noDefault, "nats.cert_chain": noDefault,
			"nats.private_key": noDefault,
		},
		provides: map[string]upstreamLink{
			"service-discovery-controller": {typ: "service-discovery-controller", properties: []string{"address", "port"}},
		},
		consumes: map[string]upstreamLink{
			"nats":     {typ: "nats", optional: true},
			"nats-tls": {typ: "nats-tls", optional: true},
		},
	},
	"performance-test-sd": {
		properties: map[string]any{},
		consumes:   map[string]upstreamLink{"nats": {typ: "nats", optional: true}},
	},
	"bbr-cfnetworkingdb": {
		properties: map[string]any{"release_level_backup": false},
		consumes:   map[string]upstreamLink{"cfnetworkingdbconn": {typ: "dbconn"}},
	},
}

// pendingJobs are upstream jobs netman does not have yet because their
// binaries are not written (spec §4.2, §4.3).
var pendingJobs = []string{}

type upstreamJob struct {
	properties map[string]any
	provides   map[string]upstreamLink
	consumes   map[string]upstreamLink
}

type upstreamLink struct {
	typ        string
	optional   bool
	properties []string
}

type defaultKind int

const (
	// noDefault: the property has no default (the operator sets it or the
	// template does without).
	noDefault defaultKind = iota
	// anyDefault: only the name matters.
	anyDefault
)
