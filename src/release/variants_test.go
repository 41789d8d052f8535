package release

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/iptableslogger"
)

// checkAll runs the syntax check on every rendered file and loads every
// daemon config that was rendered for an enabled job.
func checkAll(t *testing.T, r rendering, skipLoad ...string) {
	t.Helper()
	for _, f := range r.result.Rendered {
		checkSyntax(t, f)
	}
	for _, c := range configChecks() {
		if containsString(skipLoad, c.job) {
			continue
		}
		f := r.file(t, c.job, c.dest)
		if err := c.load(r.localize(t, f)); err != nil {
			t.Errorf("%s/%s does not load: %v\n%s", c.job, c.dest, err, readFile(t, f.Path))
		}
	}
}

func containsString(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

func jsonFile(t *testing.T, r rendering, job, dest string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(readFile(t, r.file(t, job, dest).Path), &m); err != nil {
		t.Fatalf("%s/%s: %v", job, dest, err)
	}
	return m
}

// checkBBR checks bbr-cfnetworkingdb's rendering: the SDK config, the
// program the backup and restore scripts run under BPM (%s is the action),
// and the volume BPM gives it.
func checkBBR(t *testing.T, r rendering, wantConfig map[string]any, program, sqliteDir string) {
	t.Helper()
	if diff := gocmp.Diff(wantConfig, jsonFile(t, r, "bbr-cfnetworkingdb", "config/config.json")); diff != "" {
		t.Errorf("config.json (-want +got):\n%s", diff)
	}
	for _, action := range []string{"backup", "restore"} {
		script := string(readFile(t, r.file(t, "bbr-cfnetworkingdb", "bin/bbr/"+action).Path))
		for _, want := range []string{
			fmt.Sprintf(program, action) + ` --config "$config" --artifact-file "$artifact"`,
			`artifact="${BBR_ARTIFACT_DIRECTORY%/}/cfnetworking-artifact-file"`,
			"/var/vcap/jobs/bpm/bin/bpm run bbr-cfnetworkingdb \\\n      -p " + action + " \\",
		} {
			if !strings.Contains(script, want) {
				t.Errorf("bin/bbr/%s does not contain %q:\n%s", action, want, script)
			}
		}
	}
	bpm := r.file(t, "bbr-cfnetworkingdb", "config/bpm.yml").YAML.(map[string]any)
	procs := bpm["processes"].([]any)
	if len(procs) != 2 {
		t.Fatalf("bpm.yml has %d processes, want backup and restore", len(procs))
	}
	for i, action := range []string{"backup", "restore"} {
		proc := procs[i].(map[string]any)
		if proc["name"] != action || proc["executable"] != "/var/vcap/jobs/bbr-cfnetworkingdb/bin/bbr/"+action {
			t.Errorf("bpm process %d: %v", i, proc)
		}
		want := map[string]any{"unsafe": map[string]any{"unrestricted_volumes": []any{
			map[string]any{"path": "/var/vcap/jobs/database-backup-restorer/bin", "allow_executions": true}}}}
		got := map[string]any{"unsafe": proc["unsafe"]}
		if sqliteDir != "" {
			want = map[string]any{"additional_volumes": []any{map[string]any{"path": sqliteDir, "writable": true}}}
			got = map[string]any{"additional_volumes": proc["additional_volumes"]}
		}
		if diff := gocmp.Diff(want, got); diff != "" {
			t.Errorf("bpm %s volumes (-want +got):\n%s", action, diff)
		}
	}
}

// moveJob returns a copy of d with the job moved to another instance group.
func moveJob(t *testing.T, d Deployment, job, to string) Deployment {
	t.Helper()
	d = cloneDeployment(t, d)
	var moved *Job
	for i := range d.InstanceGroups {
		jobs := d.InstanceGroups[i].Jobs
		for j := range jobs {
			if jobs[j].Name == job {
				moved = &jobs[j]
				d.InstanceGroups[i].Jobs = append(jobs[:j:j], jobs[j+1:]...)
				break
			}
		}
	}
	if moved == nil {
		t.Fatalf("no job %s", job)
	}
	for i := range d.InstanceGroups {
		if d.InstanceGroups[i].Name == to {
			d.InstanceGroups[i].Jobs = append(d.InstanceGroups[i].Jobs, *moved)
			return d
		}
	}
	t.Fatalf("no instance group %s", to)
	return d
}

// TestRenderVariants renders the manifest with the properties operators
// commonly change, and checks each variant's configs still load and carry
// the change.
func TestRenderVariants(t *testing.T) {
	requireRuby(t)
	base := cfDeployment(t)
	cases := []struct {
		name   string
		change func(t *testing.T, d Deployment) Deployment
		check  func(t *testing.T, r rendering)
		// skipLoad are jobs that render inert configs in this variant.
		skipLoad []string
	}{
		{
			name:   "BBR of the policy database through the SDK, as cf-deployment's backup-restore VM",
			change: func(t *testing.T, d Deployment) Deployment { return d },
			check: func(t *testing.T, r rendering) {
				c := testCerts(t)
				checkBBR(t, r, map[string]any{
					"username": "network_policy", "password": "secret", "host": "sql-db.service.cf.internal", "port": 3306.0,
					"database": "network_policy", "adapter": "mysql",
					"tls": map[string]any{"skip_host_verify": false, "cert": map[string]any{"ca": c["mysql_ca"]["ca"]}},
				}, "/var/vcap/jobs/database-backup-restorer/bin/%s", "")
			},
		},
		{
			name: "BBR not opted in",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "bbr-cfnetworkingdb", func(j *Job) { delete(j.Properties, "release_level_backup") })
			},
			check: func(t *testing.T, r rendering) {
				if got := jsonFile(t, r, "bbr-cfnetworkingdb", "config/config.json"); len(got) != 0 {
					t.Errorf("config.json = %v, want {}", got)
				}
				for _, script := range []string{"bin/bbr/backup", "bin/bbr/restore"} {
					out, err := exec.Command("bash", r.file(t, "bbr-cfnetworkingdb", script).Path).CombinedOutput()
					if err != nil || string(out) != "script deactivated due to release_level_backup being set to FALSE\n" {
						t.Errorf("%s: %v %q", script, err, out)
					}
				}
			},
			skipLoad: []string{"bbr-cfnetworkingdb"},
		},
		{
			name: "postgres from the database link, no TLS",
			change: func(t *testing.T, d Deployment) Deployment {
				for _, job := range []string{"silk-controller", "policy-server"} {
					d = withJob(t, d, job, func(j *Job) {
						db := j.Properties["database"].(map[string]any)
						db["type"], db["port"] = "postgres", 5432
						delete(db, "host")
						delete(db, "require_ssl")
						delete(db, "ca_cert")
					})
				}
				// Without database.host on policy-server its dbconn link
				// has no host for bbr-cfnetworkingdb (TestRenderFailures).
				return withJob(t, d, "bbr-cfnetworkingdb", func(j *Job) { j.Properties["release_level_backup"] = false })
			},
			check: func(t *testing.T, r rendering) {
				for _, c := range []struct{ job, dest string }{
					{"silk-controller", "config/silk-controller.json"},
					{"policy-server", "config/policy-server.json"},
					{"policy-server-internal", "config/policy-server-internal.json"},
				} {
					db := jsonFile(t, r, c.job, c.dest)["database"].(map[string]any)
					if db["host"] != "10.0.1.40" || db["type"] != "postgres" || db["ca_cert"] != "" {
						t.Errorf("%s: database %v, want postgres on the database link's 10.0.1.40 without a CA", c.job, db)
					}
				}
			},
			skipLoad: []string{"bbr-cfnetworkingdb"},
		},
		{
			name: "netman's sqlite on one VM",
			change: func(t *testing.T, d Deployment) Deployment {
				d = withJob(t, d, "silk-controller", func(j *Job) {
					j.Properties["database"] = map[string]any{"type": "sqlite", "name": "/var/vcap/store/silk-controller/silk.db"}
				})
				d = withJob(t, d, "policy-server", func(j *Job) {
					j.Properties["database"] = map[string]any{"type": "sqlite", "name": "/var/vcap/store/policy-server/policy.db"}
				})
				// The database file is on the api VM: BBR runs there.
				return moveJob(t, d, "bbr-cfnetworkingdb", "api")
			},
			check: func(t *testing.T, r rendering) {
				for _, job := range []string{"silk-controller", "policy-server"} {
					bpm := r.file(t, job, "config/bpm.yml").YAML.(map[string]any)
					proc := bpm["processes"].([]any)[0].(map[string]any)
					if proc["persistent_disk"] != true {
						t.Errorf("%s: a sqlite database needs BPM's persistent_disk", job)
					}
				}
				if !strings.Contains(string(readFile(t, r.file(t, "policy-server", "bin/pre-start").Path)), "chown -R vcap:vcap") {
					t.Error("policy-server pre-start does not hand the sqlite directory to vcap")
				}
				checkBBR(t, r, map[string]any{
					"username": "", "password": "", "host": "", "port": 0.0,
					"database": "/var/vcap/store/policy-server/policy.db", "adapter": "sqlite",
				}, "/var/vcap/packages/policy-server/bin/policy-server-backup-restore --%s", "/var/vcap/store/policy-server")
			},
		},
		{
			name: "policy-server without TLS, Cloud Controller by host name",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "policy-server", func(j *Job) {
					j.Properties["enable_tls"] = false
					delete(j.Properties, "server_cert")
					delete(j.Properties, "server_key")
					j.Properties["cc_hostname"] = "cloud-controller-ng.service.cf.internal"
					j.Properties["cc_port"] = 9022
				})
			},
			check: func(t *testing.T, r rendering) {
				c := jsonFile(t, r, "policy-server", "config/policy-server.json")
				if c["cc_url"] != "http://cloud-controller-ng.service.cf.internal:9022" || c["enable_tls"] != false {
					t.Errorf("cc_url %v enable_tls %v", c["cc_url"], c["enable_tls"])
				}
				if ca := strings.TrimSpace(string(readFile(t, r.file(t, "policy-server", "config/certs/cc_ca.crt").Path))); ca != "" {
					t.Error("cc_ca.crt is rendered although Cloud Controller is reached over plain HTTP")
				}
			},
		},
		{
			name: "iptables logging, bandwidth, MTU, host services, outbound limits",
			change: func(t *testing.T, d Deployment) Deployment {
				d = withJob(t, d, "silk-cni", func(j *Job) {
					j.Properties["iptables_logging"] = true
					j.Properties["rate"], j.Properties["burst"] = 100, 500
					j.Properties["mtu"] = 1400
					j.Properties["host_tcp_services"] = []string{"169.254.0.2:9001"}
					j.Properties["host_udp_services"] = []string{"169.254.0.2:8125"}
					setProp(j.Properties, "outbound_connections.limit", true)
					setProp(j.Properties, "outbound_connections.dry_run", true)
					setProp(j.Properties, "deny_networks.running", []string{"10.0.0.0/8"})
					j.Properties["no_masquerade_cidr_range"] = "10.255.0.0/16"
				})
				return withJob(t, d, "vxlan-policy-agent", func(j *Job) { j.Properties["iptables_logging"] = true })
			},
			check: func(t *testing.T, r rendering) {
				var list struct {
					Plugins []map[string]any `json:"plugins"`
				}
				if err := json.Unmarshal(readFile(t, r.file(t, "silk-cni", "config/cni/cni-wrapper-plugin.conflist").Path), &list); err != nil {
					t.Fatal(err)
				}
				w, bw := list.Plugins[0], list.Plugins[1]
				if w["iptables_asg_logging"] != true || w["iptables_c2c_logging"] != true {
					t.Errorf("conflist logging: %v %v", w["iptables_asg_logging"], w["iptables_c2c_logging"])
				}
				if w["enforcement_backend"] != "iptables" {
					t.Errorf("enforcement_backend %v, want the default iptables", w["enforcement_backend"])
				}
				if bw["ingressRate"] != 102400.0 || bw["egressBurst"] != 512000.0 {
					t.Errorf("bandwidth: %v", bw)
				}
				if mtu := w["delegate"].(map[string]any)["mtu"]; mtu != 1350.0 {
					t.Errorf("delegate mtu %v, want 1400-50", mtu)
				}
				vpa := jsonFile(t, r, "vxlan-policy-agent", "config/vxlan-policy-agent.json")
				if vpa["iptables_asg_logging"] != true || vpa["iptables_c2c_logging"] != true {
					t.Errorf("agent logging from the cni_config link: %v %v", vpa["iptables_asg_logging"], vpa["iptables_c2c_logging"])
				}
				oc := vpa["outbound_connections"].(map[string]any)
				if oc["limit"] != true || oc["logging"] != true {
					t.Errorf("agent outbound_connections %v", oc)
				}
				if _, ok := oc["dry_run"]; ok {
					t.Error("the agent's outbound_connections carries dry_run; upstream renders none")
				}
				if running := vpa["deny_networks"].(map[string]any)["running"].([]any); len(running) != 1 || running[0] != "10.0.0.0/8" {
					t.Errorf("agent deny_networks.running %v", running)
				}
				if vpa["iptables_per_destination_chains"] != false {
					t.Errorf("iptables_per_destination_chains %v, want the default false", vpa["iptables_per_destination_chains"])
				}
			},
		},
		{
			name: "per-destination chains",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "vxlan-policy-agent", func(j *Job) { j.Properties["iptables_per_destination_chains"] = true })
			},
			check: func(t *testing.T, r rendering) {
				vpa := jsonFile(t, r, "vxlan-policy-agent", "config/vxlan-policy-agent.json")
				if vpa["iptables_per_destination_chains"] != true {
					t.Errorf("iptables_per_destination_chains %v, want true", vpa["iptables_per_destination_chains"])
				}
			},
		},
		{
			name: "per-app metrics",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "vxlan-policy-agent", func(j *Job) {
					j.Properties["enable_app_metrics"] = true
					j.Properties["app_metrics_max_series"] = 800
				})
			},
			check: func(t *testing.T, r rendering) {
				vpa := jsonFile(t, r, "vxlan-policy-agent", "config/vxlan-policy-agent.json")
				if vpa["enable_app_metrics"] != true || vpa["app_metrics_max_series"] != float64(800) {
					t.Errorf("enable_app_metrics %v app_metrics_max_series %v, want true 800", vpa["enable_app_metrics"], vpa["app_metrics_max_series"])
				}
			},
		},
		{
			name: "dual stack for the deployment: silk-controller's ipv6.enable on the cf_network link",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "silk-controller", func(j *Job) { setProp(j.Properties, "ipv6.enable", true) })
			},
			check: func(t *testing.T, r rendering) {
				checkIPv6Rendered(t, r, "fd73:696c:6b::/96")
			},
		},
		{
			name: "dual stack from the jobs' own ipv6.enable, on another overlay",
			change: func(t *testing.T, d Deployment) Deployment {
				d = withJob(t, d, "silk-controller", func(j *Job) { setProp(j.Properties, "ipv6.overlay_network", "fd00:1:2::/96") })
				d = withJob(t, d, "silk-daemon", func(j *Job) { setProp(j.Properties, "ipv6.enable", true) })
				return withJob(t, d, "silk-cni", func(j *Job) { setProp(j.Properties, "ipv6.enable", true) })
			},
			check: func(t *testing.T, r rendering) {
				checkIPv6Rendered(t, r, "fd00:1:2::/96")
			},
		},
		{
			name:   "IPv4 only by default: no ipv6_overlay_network anywhere",
			change: func(t *testing.T, d Deployment) Deployment { return d },
			check: func(t *testing.T, r rendering) {
				checkIPv6Rendered(t, r, "")
			},
		},
		{
			name: "nftables enforcement backend",
			change: func(t *testing.T, d Deployment) Deployment {
				d = withJob(t, d, "vxlan-policy-agent", func(j *Job) { j.Properties["enforcement_backend"] = "nftables" })
				return withJob(t, d, "silk-cni", func(j *Job) { j.Properties["enforcement_backend"] = "nftables" })
			},
			check: func(t *testing.T, r rendering) {
				vpa := jsonFile(t, r, "vxlan-policy-agent", "config/vxlan-policy-agent.json")
				if vpa["enforcement_backend"] != "nftables" {
					t.Errorf("enforcement_backend %v, want nftables", vpa["enforcement_backend"])
				}
				pre := string(readFile(t, r.file(t, "vxlan-policy-agent", "bin/pre-start").Path))
				if !strings.Contains(pre, "nft delete table inet netman") || !strings.Contains(pre, "iptables-restore") {
					t.Errorf("pre-start does not wipe both backends:\n%s", pre)
				}
				var list struct {
					Plugins []json.RawMessage `json:"plugins"`
				}
				if err := json.Unmarshal(readFile(t, r.file(t, "silk-cni", "config/cni/cni-wrapper-plugin.conflist").Path), &list); err != nil {
					t.Fatal(err)
				}
				cfg, err := cniwrapper.LoadConfig(list.Plugins[0])
				if err != nil {
					t.Fatal(err)
				}
				if !cfg.NFTables() {
					t.Errorf("enforcement_backend %q, want nftables", cfg.EnforcementBackend)
				}
			},
		},
		{
			name: "iptables-logger flow logs on, 200 a second in bursts of 400",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "iptables-logger", func(j *Job) {
					j.Properties["enable_flow_logs"] = true
					j.Properties["flow_logs_per_sec"] = 200
					j.Properties["flow_logs_burst"] = 400
				})
			},
			check: func(t *testing.T, r rendering) {
				path := r.file(t, "iptables-logger", "config/iptables-logger.json").Path
				cfg, err := iptableslogger.LoadConfig(path)
				if err != nil {
					t.Fatal(err)
				}
				if !cfg.EnableFlowLogs || cfg.FlowLogsPerSec != 200 || cfg.FlowBurst() != 400 {
					t.Errorf("flow logs config %+v", cfg)
				}
			},
		},
		{
			name: "VXLAN on a second network, timestamps deprecated",
			change: func(t *testing.T, d Deployment) Deployment {
				for i := range d.InstanceGroups {
					if d.InstanceGroups[i].Name == "diego-cell" {
						d.InstanceGroups[i].Instances[0].Networks["overlay-underlay"] = Network{IP: "192.168.7.5"}
					}
				}
				d = withJob(t, d, "silk-daemon", func(j *Job) {
					j.Properties["vxlan_network"] = "overlay-underlay"
					setProp(j.Properties, "logging.format.timestamp", "deprecated")
				})
				return withJob(t, d, "iptables-logger", func(j *Job) {
					setProp(j.Properties, "logging.format.timestamp", "deprecated")
				})
			},
			check: func(t *testing.T, r rendering) {
				if ip := jsonFile(t, r, "silk-daemon", "config/client-config.json")["underlay_ip"]; ip != "192.168.7.5" {
					t.Errorf("underlay_ip %v, want the vxlan_network's IP", ip)
				}
				var list struct {
					Plugins []map[string]any `json:"plugins"`
				}
				if err := json.Unmarshal(readFile(t, r.file(t, "silk-cni", "config/cni/cni-wrapper-plugin.conflist").Path), &list); err != nil {
					t.Fatal(err)
				}
				if ips := list.Plugins[0]["underlay_ips"].([]any); len(ips) != 2 {
					t.Errorf("underlay_ips %v, want both networks' IPs", ips)
				}
				if !strings.Contains(string(readFile(t, r.file(t, "silk-daemon", "bin/drain").Path)), "date +%s.%N") {
					t.Error("drain log does not use the deprecated timestamps")
				}
			},
		},
		{
			name: "service discovery over plain NATS from properties, mesh domains, VIP override",
			change: func(t *testing.T, d Deployment) Deployment {
				d = withJob(t, d, "service-discovery-controller", func(j *Job) {
					j.Properties["nats"] = map[string]any{"machines": []string{"10.0.1.51", "10.0.1.52"}, "port": 4222, "user": "u", "password": "p"}
				})
				return withJob(t, d, "bosh-dns-adapter", func(j *Job) {
					j.Properties["internal_service_mesh_domains"] = []string{"istio.apps.internal"}
					j.Properties["internal_route_vip_range"] = "127.200.0.0/16"
				})
			},
			check: func(t *testing.T, r rendering) {
				nats := jsonFile(t, r, "service-discovery-controller", "config/config.json")["nats"].(map[string]any)
				if hosts := nats["hosts"].([]any); len(hosts) != 2 || nats["tls_enabled"] != false || nats["user"] != "u" {
					t.Errorf("nats %v", nats)
				}
				var handlers []map[string]any
				if err := json.Unmarshal(readFile(t, r.file(t, "bosh-dns-adapter", "dns/handlers.json").Path), &handlers); err != nil {
					t.Fatal(err)
				}
				if len(handlers) != 2 || handlers[1]["domain"] != "istio.apps.internal." {
					t.Errorf("handlers %v", handlers)
				}
				c := jsonFile(t, r, "bosh-dns-adapter", "config/config.json")
				if c["internal_route_vip_range"] != "127.200.0.0/16" {
					t.Errorf("internal_route_vip_range %v", c["internal_route_vip_range"])
				}
			},
		},
		{
			name: "proxy redirect from the Cloud Controller link",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "garden-cni", func(j *Job) {
					j.Properties["experimental_enable_proxy_redirect"] = true
					j.Properties["experimental_enable_ingress_proxy_redirect"] = true
				})
			},
			check: func(t *testing.T, r rendering) {
				c := jsonFile(t, r, "garden-cni", "config/adapter.json")
				if c["proxy_redirect_cidr"] != "127.128.0.0/9" || c["enable_ingress_proxy_redirect"] != true {
					t.Errorf("adapter.json %v", c)
				}
			},
		},
		{
			name: "a router joins the overlay with one IP",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "silk-daemon", func(j *Job) { j.Properties["single_ip_only"] = true })
			},
			check: func(t *testing.T, r rendering) {
				c := jsonFile(t, r, "silk-daemon", "config/bootstrap-config.json")
				if c["single_ip_only"] != true || c["policy_server_url"] != "https://policy-server.service.cf.internal:4003" ||
					c["iptables_lock_file"] != "/var/vcap/data/garden-cni/iptables.lock" {
					t.Errorf("bootstrap-config.json %v", c)
				}
				if jsonFile(t, r, "silk-daemon", "config/client-config.json")["single_ip_only"] != true {
					t.Error("the daemon does not ask for a single IP")
				}
				for _, pair := range [][2]string{
					{"config/certs/policy-agent/client.crt", "config/certs/client.crt"},
					{"config/certs/policy-agent/client.key", "config/certs/client.key"},
					{"config/certs/policy-agent/ca.crt", "config/certs/ca.crt"},
				} {
					got := strings.TrimSpace(string(readFile(t, r.file(t, "silk-daemon", pair[0]).Path)))
					want := strings.TrimSpace(string(readFile(t, r.file(t, "vxlan-policy-agent", pair[1]).Path)))
					if got == "" || got != want {
						t.Errorf("silk-daemon %s is not vxlan-policy-agent's %s", pair[0], pair[1])
					}
				}
				pre := string(readFile(t, r.file(t, "silk-daemon", "bin/pre-start").Path))
				if !strings.Contains(pre, "/var/vcap/packages/silk-daemon/bin/silk-daemon-bootstrap \\\n  -config=/var/vcap/jobs/silk-daemon/config/bootstrap-config.json") {
					t.Errorf("pre-start does not run the bootstrap:\n%s", pre)
				}
			},
		},
		{
			name: "asg-syncer locks in the database without locket",
			change: func(t *testing.T, d Deployment) Deployment {
				return withJob(t, d, "policy-server-asg-syncer", func(j *Job) {
					j.Properties["locket"] = map[string]any{"address": ""}
					j.Properties["cc_hostname"] = "cc.example.com"
					j.Properties["cc_port"] = 9022
					j.Properties["asg_poll_interval_seconds"] = 1
				})
			},
			check: func(t *testing.T, r rendering) {
				c := jsonFile(t, r, "policy-server-asg-syncer", "config/policy-server-asg-syncer.json")
				if c["locket_address"] != "" || c["locket_ca_cert_file"] != nil {
					t.Errorf("locket keys rendered without locket: %v %v", c["locket_address"], c["locket_ca_cert_file"])
				}
				if c["cc_url"] != "http://cc.example.com:9022" || c["cc_internal_url"] != "https://cloud-controller-ng.service.cf.internal:9023" ||
					c["asg_poll_interval_seconds"] != float64(1) || c["uuid"] == "" {
					t.Errorf("syncer config: %v", c)
				}
			},
		},
		{
			name: "every job disabled",
			change: func(t *testing.T, d Deployment) Deployment {
				for _, job := range []string{"silk-controller", "policy-server", "policy-server-internal", "silk-daemon",
					"silk-cni", "vxlan-policy-agent", "netmon", "iptables-logger", "silk-datastore-syncer",
					"policy-server-asg-syncer"} {
					d = withJob(t, d, job, func(j *Job) { j.Properties["disable"] = true })
				}
				return withJob(t, d, "bosh-dns-adapter", func(j *Job) {
					j.Properties = map[string]any{"cf_app_sd_disable": true}
				})
			},
			skipLoad: []string{"bosh-dns-adapter"},
			check: func(t *testing.T, r rendering) {
				for _, f := range r.result.Rendered {
					if f.Dest == "monit" && f.Job != "service-discovery-controller" &&
						strings.Contains(string(readFile(t, f.Path)), "check process") {
						t.Errorf("%s is disabled but monit still runs it", f.Job)
					}
				}
				var handlers []any
				if err := json.Unmarshal(readFile(t, r.file(t, "bosh-dns-adapter", "dns/handlers.json").Path), &handlers); err != nil || len(handlers) != 0 {
					t.Errorf("disabled adapter still registers handlers: %v %v", handlers, err)
				}
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := mustRender(t, c.change(t, cloneDeployment(t, base)))
			checkAll(t, r, c.skipLoad...)
			c.check(t, r)
		})
	}
}

// TestRenderFailures checks what the director would refuse: a required
// property missing, a value the template rejects, a link nobody provides.
// Each message names the property or link at fault.
func TestRenderFailures(t *testing.T) {
	requireRuby(t)
	base := cfDeployment(t)
	unset := func(job, prop string) func(*testing.T, Deployment) Deployment {
		return func(t *testing.T, d Deployment) Deployment {
			return withJob(t, d, job, func(j *Job) { setProp(j.Properties, prop, nil) })
		}
	}
	set := func(job, prop string, value any) func(*testing.T, Deployment) Deployment {
		return func(t *testing.T, d Deployment) Deployment {
			return withJob(t, d, job, func(j *Job) { setProp(j.Properties, prop, value) })
		}
	}
	missing := func(prop string) string { return `Can't find property '["` + prop + `"]'` }
	cases := []struct {
		name     string
		job      string
		change   func(*testing.T, Deployment) Deployment
		template string
		want     string
	}{
		{"silk-controller server_key", "silk-controller", unset("silk-controller", "server_key"), "server.key.erb", missing("server_key")},
		{"silk-controller database.type", "silk-controller", unset("silk-controller", "database.type"), "silk-controller.json.erb", missing("database.type")},
		{"silk-controller database.name", "silk-controller", unset("silk-controller", "database.name"), "silk-controller.json.erb", missing("database.name")},
		{"silk-daemon client_cert", "silk-daemon", unset("silk-daemon", "client_cert"), "client.crt.erb", missing("client_cert")},
		{"silk-daemon ca_cert", "silk-daemon", unset("silk-daemon", "ca_cert"), "ca.crt.erb", missing("ca_cert")},
		{"policy-server uaa_client_secret", "policy-server", unset("policy-server", "uaa_client_secret"), "policy-server.json.erb", missing("uaa_client_secret")},
		{"policy-server server_cert with enable_tls", "policy-server", unset("policy-server", "server_cert"), "policy-server.json.erb", missing("server_cert")},
		{"policy-server-internal server_key", "policy-server-internal", unset("policy-server-internal", "server_key"), "server.key.erb", missing("server_key")},
		{"policy-server-asg-syncer cc_internal.client_key", "policy-server-asg-syncer", unset("policy-server-asg-syncer", "cc_internal.client_key"), "cc_internal_client.key.erb", missing("cc_internal.client_key")},
		{"policy-server-asg-syncer poll interval zero", "policy-server-asg-syncer", set("policy-server-asg-syncer", "asg_poll_interval_seconds", 0), "policy-server-asg-syncer.json.erb", "asg_poll_interval_seconds must be an integer greater than 0"},
		{"policy-server-asg-syncer bad locket address", "policy-server-asg-syncer", set("policy-server-asg-syncer", "locket.address", "https://locket"), "policy-server-asg-syncer.json.erb", "the locket_address is invalid"},
		{"vxlan-policy-agent enforcement_backend", "vxlan-policy-agent", set("vxlan-policy-agent", "enforcement_backend", "ebpf"), "vxlan-policy-agent.json.erb", "enforcement_backend must be iptables or nftables (got 'ebpf')"},
		{"iptables-logger flow logs without a rate", "iptables-logger", func(t *testing.T, d Deployment) Deployment {
			return withJob(t, d, "iptables-logger", func(j *Job) { j.Properties["enable_flow_logs"] = true; j.Properties["flow_logs_per_sec"] = 0 })
		}, "iptables-logger.json.erb", "flow_logs_per_sec must be positive when enable_flow_logs is true (got 0)"},
		{"iptables-logger enable_flow_logs not a boolean", "iptables-logger", set("iptables-logger", "enable_flow_logs", "yes"), "iptables-logger.json.erb", "enable_flow_logs must be true or false (got 'yes')"},
		{"iptables-logger negative flow burst", "iptables-logger", set("iptables-logger", "flow_logs_burst", -1), "iptables-logger.json.erb", "flow_logs_per_sec and flow_logs_burst must not be negative"},
		{"netmon enforcement_backend", "netmon", set("netmon", "enforcement_backend", "ebpf"), "netmon.json.erb", "enforcement_backend must be iptables or nftables (got 'ebpf')"},
		{"vxlan-policy-agent client_key", "vxlan-policy-agent", unset("vxlan-policy-agent", "client_key"), "client.key.erb", missing("client_key")},
		{"bosh-dns-adapter client certificate", "bosh-dns-adapter", unset("bosh-dns-adapter", "dnshttps.client.tls"), "client.crt.erb", missing("dnshttps.client.tls.certificate")},
		{"service-discovery-controller client CA", "service-discovery-controller", unset("service-discovery-controller", "dnshttps.client.ca"), "client_ca.crt.erb", missing("dnshttps.client.ca")},
		{"service-discovery-controller NATS client cert", "service-discovery-controller", unset("service-discovery-controller", "nats.cert_chain"), "config.json.erb", missing("nats.cert_chain")},
		{"vxlan-policy-agent loggregator cert with v2", "vxlan-policy-agent", func(t *testing.T, d Deployment) Deployment {
			d = set("vxlan-policy-agent", "loggregator.use_v2_api", true)(t, d)
			return unset("vxlan-policy-agent", "loggregator.key")(t, d)
		}, "vxlan-policy-agent.json.erb", missing("loggregator.key")},

		{"tag_length too long", "policy-server", set("policy-server", "tag_length", 4), "policy-server.json.erb", "tag_length must be between 1 and 3"},
		{"subnet not inside the network", "silk-controller", set("silk-controller", "subnet_prefix_length", 16), "silk-controller.json.erb", "must be longer than the prefix of network"},
		{"network with a leading zero", "silk-controller", set("silk-controller", "network", "10.255.00.0/16"), "silk-controller.json.erb", "Invalid network '10.255.00.0/16'"},
		{"listen_ip with a leading zero", "policy-server", set("policy-server", "listen_ip", "010.0.0.1"), "policy-server.json.erb", "Invalid listen_ip '010.0.0.1'"},
		{"cleanup interval zero", "policy-server", set("policy-server", "policy_cleanup_interval", 0), "policy-server.json.erb", "policy_cleanup_interval must be at least 1"},
		{"database type", "policy-server", set("policy-server", "database.type", "oracle"), "policy-server.json.erb", "database.type must be mysql or postgres"},
		{"deny network not a CIDR", "silk-cni", set("silk-cni", "deny_networks.always", []string{"10.0.0.0"}), "cni-wrapper-plugin.conflist.erb", "Invalid deny_networks.always entry '10.0.0.0'"},
		{"loopback host service", "silk-cni", set("silk-cni", "host_tcp_services", []string{"127.0.0.1:8080"}), "cni-wrapper-plugin.conflist.erb", "loopback"},
		{"rate without burst", "silk-cni", set("silk-cni", "rate", 100), "cni-wrapper-plugin.conflist.erb", "rate and burst must be set together"},
		{"unknown enforcement backend", "silk-cni", set("silk-cni", "enforcement_backend", "ebpf"), "cni-wrapper-plugin.conflist.erb", "Invalid enforcement_backend 'ebpf': want iptables or nftables"},
		{"silk-daemon ipv6.prefix_network", "silk-daemon", set("silk-daemon", "ipv6.prefix_network", "2001:db8::/64"), "client-config.json.erb", "ipv6.prefix_network is not supported by netman"},
		{"silk-cni ipv6.prefix_network", "silk-cni", set("silk-cni", "ipv6.prefix_network", "2001:db8::/64"), "cni-wrapper-plugin.conflist.erb", "ipv6.prefix_network is not supported by netman"},
		{"ipv6.overlay_network not a /96", "silk-daemon", func(t *testing.T, d Deployment) Deployment {
			d = set("silk-controller", "ipv6.overlay_network", "fd00::/64")(t, d)
			return set("silk-controller", "ipv6.enable", true)(t, d)
		}, "client-config.json.erb", "Invalid ipv6.overlay_network 'fd00::/64'"},
		{"ipv6.overlay_network with host bits", "silk-cni", func(t *testing.T, d Deployment) Deployment {
			d = set("silk-controller", "ipv6.overlay_network", "fd00::1/96")(t, d)
			return set("silk-controller", "ipv6.enable", true)(t, d)
		}, "cni-wrapper-plugin.conflist.erb", "Invalid ipv6.overlay_network 'fd00::1/96'"},
		{"vxlan_network and temporary_vxlan_interface", "silk-daemon", func(t *testing.T, d Deployment) Deployment {
			d = set("silk-daemon", "vxlan_network", "default")(t, d)
			return set("silk-daemon", "temporary_vxlan_interface", "eth1")(t, d)
		}, "client-config.json.erb", "vxlan_network and temporary_vxlan_interface cannot both be set"},
		{"unknown vxlan_network", "silk-daemon", set("silk-daemon", "vxlan_network", "nope"), "client-config.json.erb", "vxlan_network 'nope' is not a network"},
		{"route emitter interval not below staleness", "service-discovery-controller", set("service-discovery-controller", "route_emitter_interval_seconds", 180), "config.json.erb", "must be less than staleness_threshold_seconds"},
		{"single_ip_only without the vpa link", "silk-daemon", func(t *testing.T, d Deployment) Deployment {
			d = set("silk-daemon", "single_ip_only", true)(t, d)
			return withJob(t, d, "silk-daemon", func(j *Job) { j.Consumes = map[string]any{"vpa": nil} })
		}, "bootstrap-config.json.erb", "single_ip_only needs the vpa link"},
		{"datastore syncer interval zero", "silk-datastore-syncer", set("silk-datastore-syncer", "sync_interval_in_seconds", 0), "start.erb", "sync_interval_in_seconds must be at least 1 (got 0)"},
		{"datastore syncer garden network", "silk-datastore-syncer", set("silk-datastore-syncer", "garden.network", "udp"), "start.erb", "garden.network must be unix or tcp (got 'udp')"},
		{"datastore syncer log level", "silk-datastore-syncer", set("silk-datastore-syncer", "log_level", "loud"), "start.erb", "log_level must be debug, info, warn, error or fatal (got 'loud')"},
		{"drain timestamp format", "silk-daemon", set("silk-daemon", "logging.format.timestamp", "unix"), "drain.erb", "logging.format.timestamp must be rfc3339 or deprecated"},
		{"proxy redirect without a CIDR", "garden-cni", func(t *testing.T, d Deployment) Deployment {
			d = set("garden-cni", "experimental_enable_proxy_redirect", true)(t, d)
			delete(d.ExternalLinks, "cloud_controller_container_networking_info")
			return d
		}, "adapter.json.erb", "experimental_enable_proxy_redirect needs"},
		{"no Cloud Controller", "policy-server", func(t *testing.T, d Deployment) Deployment {
			delete(d.ExternalLinks, "cloud_controller_https_endpoint")
			return d
		}, "policy-server.json.erb", "Cloud Controller is unknown"},
		{"bbr-cfnetworkingdb without database.host", "bbr-cfnetworkingdb", unset("policy-server", "database.host"), "config.json.erb",
			"the cfnetworkingdbconn link has no database.host: set database.host on policy-server"},
		{"bbr-cfnetworkingdb away from a sqlite policy-server", "bbr-cfnetworkingdb", set("policy-server", "database",
			map[string]any{"type": "sqlite", "name": "/var/vcap/store/policy-server/policy.db"}), "config.json.erb",
			"colocate bbr-cfnetworkingdb with policy-server"},
		{"performance-test-sd without NATS", "performance-test-sd", func(t *testing.T, d Deployment) Deployment {
			delete(d.ExternalLinks, "nats")
			return d
		}, "config.json.erb", "performance-test-sd needs the nats link"},
		{"no silk-controller for the cf_network link", "silk-daemon", func(t *testing.T, d Deployment) Deployment {
			var igs []InstanceGroup
			for _, ig := range d.InstanceGroups {
				if ig.Name != "diego-api" {
					igs = append(igs, ig)
				}
			}
			d.InstanceGroups = igs
			return d
		}, "", "Failed to resolve link 'cf_network' with type 'cf_network' from job 'silk-daemon'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := render(t, c.change(t, cloneDeployment(t, base)))
			var found []string
			for _, e := range r.result.Errors {
				if e.Job == c.job && e.Template == c.template && strings.Contains(e.Message, c.want) {
					return
				}
				found = append(found, e.String())
			}
			t.Errorf("want %s %s to fail with %q; errors:\n%s", c.job, c.template, c.want, strings.Join(found, "\n"))
		})
	}
}

// TestMissingPropertyMessage pins the message format operators see, which
// is the director's: the template, the line and the property.
func TestMissingPropertyMessage(t *testing.T) {
	requireRuby(t)
	d := withJob(t, cfDeployment(t), "silk-controller", func(j *Job) { delete(j.Properties, "ca_cert") })
	r := render(t, d, Target{InstanceGroup: "diego-api", Job: "silk-controller"})
	if len(r.result.Errors) != 1 {
		t.Fatalf("want one error, got %v", r.result.Errors)
	}
	want := `Error filling in template 'ca.crt.erb' (line 1: Can't find property '["ca_cert"]')`
	if got := r.result.Errors[0].Message; got != want {
		t.Errorf("message\n got %s\nwant %s", got, want)
	}
	if _, err := os.Stat(r.out + "/diego-api/silk-controller/config/certs/ca.crt"); err == nil {
		t.Error("a template that failed was written")
	}
}

// checkIPv6Rendered checks silk-daemon's config and the wrapper's conflist
// entry carry ipv6_overlay_network = want (absent when want is ""), and
// that both load.
func checkIPv6Rendered(t *testing.T, r rendering, want string) {
	t.Helper()
	daemon := jsonFile(t, r, "silk-daemon", "config/client-config.json")
	if got, ok := daemon["ipv6_overlay_network"]; (want == "" && ok) || (want != "" && got != want) {
		t.Errorf("silk-daemon ipv6_overlay_network %v (present %v), want %q", got, ok, want)
	}
	var list struct {
		Plugins []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(readFile(t, r.file(t, "silk-cni", "config/cni/cni-wrapper-plugin.conflist").Path), &list); err != nil {
		t.Fatal(err)
	}
	if got, ok := list.Plugins[0]["ipv6_overlay_network"]; (want == "" && ok) || (want != "" && got != want) {
		t.Errorf("cni-wrapper-plugin ipv6_overlay_network %v (present %v), want %q", got, ok, want)
	}
	b, _ := json.Marshal(list.Plugins[0])
	cfg, err := cniwrapper.LoadConfig(b)
	if err != nil {
		t.Fatalf("wrapper config: %v", err)
	}
	if cfg.IPv6().String() != want {
		t.Errorf("wrapper config IPv6 %q, want %q", cfg.IPv6(), want)
	}
}
