package release

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// repoRoot is the repository root, which is the release directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// requireRuby skips the test when ruby is missing, or fails it under CI
// (scripts/test installs it as root).
func requireRuby(t testing.TB) {
	t.Helper()
	if _, _, err := Specs(repoRoot(t)); err == ErrNoRuby {
		testtier.Unavailable(t, "ruby is not installed, so the BOSH templates cannot be rendered; install Debian's ruby package (scripts/test does as root)")
	}
}

// certSet is the credhub variables of cf-deployment (§5.1 of the spec), as
// PEM, in the shape the manifest takes them: ca, certificate, private_key.
type certSet map[string]map[string]string

var (
	certsOnce sync.Once
	certsVal  certSet
	certsErr  error
)

func testCerts(t testing.TB) certSet {
	t.Helper()
	certsOnce.Do(func() { certsVal, certsErr = newCerts() })
	if certsErr != nil {
		t.Fatal(certsErr)
	}
	return certsVal
}

func newCerts() (certSet, error) {
	type leaf struct {
		name, ca, cn string
		hosts        []string
		usage        mtls.Usage
	}
	cas := map[string]string{
		"silk_ca":                "silk-ca",
		"network_policy_ca":      "networkPolicyCA",
		"cf_app_sd_ca":           "service-discovery-controller.service.cf.internal",
		"nats_ca":                "nats",
		"uaa_ca":                 "uaaCA",
		"loggregator_ca":         "loggregatorCA",
		"mysql_ca":               "mysqlCA",
		"service_cf_internal_ca": "service_cf_internal_ca",
	}
	leaves := []leaf{
		{"silk_controller", "silk_ca", "silk-controller.service.cf.internal", []string{"silk-controller.service.cf.internal"}, mtls.Server},
		{"silk_daemon", "silk_ca", "silk-daemon", nil, mtls.Client},
		{"network_policy_server", "network_policy_ca", "policy-server.service.cf.internal", []string{"policy-server.service.cf.internal"}, mtls.Server},
		{"network_policy_server_external", "network_policy_ca", "api.sys.example.com", []string{"api.sys.example.com"}, mtls.Server},
		{"network_policy_client", "network_policy_ca", "clientName", nil, mtls.Client},
		{"cf_app_sd_server_tls", "cf_app_sd_ca", "service-discovery-controller.service.cf.internal", []string{"service-discovery-controller.service.cf.internal"}, mtls.Server},
		{"cf_app_sd_client_tls", "cf_app_sd_ca", "service-discovery-controller.service.cf.internal", []string{"service-discovery-controller.service.cf.internal"}, mtls.Client},
		{"nats_client_cert", "nats_ca", "nats_client", nil, mtls.Client},
		{"loggregator_tls_agent", "loggregator_ca", "metron", nil, mtls.Client},
		{"uaa_ssl", "uaa_ca", "uaa.service.cf.internal", []string{"uaa.service.cf.internal"}, mtls.Server},
		{"mysql_server_certificate", "mysql_ca", "sql-db.service.cf.internal", []string{"sql-db.service.cf.internal"}, mtls.Server},
		{"policy_server_asg_syncer_cc_client", "service_cf_internal_ca", "policy_server_asg_syncer_cc_client", nil, mtls.Client},
		{"asg_syncer_locket_client", "service_cf_internal_ca", "locket-client", nil, mtls.Client},
	}
	out := certSet{}
	authorities := map[string]*mtls.CA{}
	for name, cn := range cas {
		ca, err := mtls.NewCA(cn)
		if err != nil {
			return nil, err
		}
		authorities[name] = ca
		out[name] = map[string]string{"ca": string(ca.CertPEM()), "certificate": string(ca.CertPEM())}
	}
	for _, l := range leaves {
		ca := authorities[l.ca]
		certPEM, keyPEM, err := ca.Issue(l.cn, l.hosts, l.usage)
		if err != nil {
			return nil, err
		}
		out[l.name] = map[string]string{"ca": string(ca.CertPEM()), "certificate": string(certPEM), "private_key": string(keyPEM)}
	}
	return out, nil
}

// cfDeployment is a cf-deployment-like manifest with netman's jobs on the
// instance groups of §4.4: the representative manifest every template is
// rendered with. Only what the jobs require, plus cf-deployment's usual
// overrides, is set; everything else comes from the specs' defaults.
func cfDeployment(t testing.TB) Deployment {
	t.Helper()
	c := testCerts(t)
	tls := func(name string) map[string]any {
		return map[string]any{"certificate": c[name]["certificate"], "private_key": c[name]["private_key"]}
	}
	mysql := func(name string) map[string]any {
		return map[string]any{
			"type": "mysql", "username": name, "password": "secret", "port": 3306, "name": name,
			"host": "sql-db.service.cf.internal", "require_ssl": true, "ca_cert": c["mysql_ca"]["ca"],
		}
	}
	network := func(ip string) map[string]Network {
		return map[string]Network{"default": {IP: ip, Default: []string{"dns", "gateway"}}}
	}
	return Deployment{
		Name: "cf",
		InstanceGroups: []InstanceGroup{
			{
				Name: "diego-api",
				Instances: []Instance{{Index: 0, ID: "7f3c59c3-3a44-4a6e-8c33-1d0b0f51e0a1", AZ: "z1", Bootstrap: true,
					Networks: network("10.0.1.10")}},
				Jobs: []Job{{Name: "silk-controller", Properties: map[string]any{
					"ca_cert":     c["silk_ca"]["ca"],
					"server_cert": c["silk_controller"]["certificate"],
					"server_key":  c["silk_controller"]["private_key"],
					"database":    mysql("network_connectivity"),
				}}},
			},
			{
				Name: "api",
				Instances: []Instance{{Index: 0, ID: "2b1e6b7e-7a0e-4c55-9d43-2f8f8c1ad0b2", AZ: "z1", Bootstrap: true,
					Networks: network("10.0.1.20")}},
				Jobs: []Job{
					{Name: "policy-server", Properties: map[string]any{
						"enable_tls":                          true,
						"server_cert":                         c["network_policy_server_external"]["certificate"],
						"server_key":                          c["network_policy_server_external"]["private_key"],
						"enable_space_developer_self_service": true,
						"uaa_client_secret":                   "uaa-secret",
						"uaa_ca":                              c["uaa_ca"]["ca"],
						"database":                            mysql("network_policy"),
					}},
					{Name: "policy-server-internal", Properties: map[string]any{
						"ca_cert":     c["network_policy_ca"]["ca"],
						"server_cert": c["network_policy_server"]["certificate"],
						"server_key":  c["network_policy_server"]["private_key"],
					}},
					{Name: "policy-server-asg-syncer", Properties: map[string]any{
						"uaa_client_secret": "uaa-secret",
						"uaa_ca":            c["uaa_ca"]["ca"],
						"cc_internal": map[string]any{
							"client_cert": c["policy_server_asg_syncer_cc_client"]["certificate"],
							"client_key":  c["policy_server_asg_syncer_cc_client"]["private_key"],
						},
						"locket": map[string]any{
							"ca_cert":     c["service_cf_internal_ca"]["ca"],
							"client_cert": c["asg_syncer_locket_client"]["certificate"],
							"client_key":  c["asg_syncer_locket_client"]["private_key"],
						},
					}},
				},
			},
			{
				Name: "scheduler",
				Instances: []Instance{{Index: 0, ID: "c9d1b3a0-5d1e-4f0a-a9c2-6b5e3f7d8e90", AZ: "z1", Bootstrap: true,
					Networks: network("10.0.1.30")}},
				Jobs: []Job{{Name: "service-discovery-controller", Properties: map[string]any{
					"dnshttps": map[string]any{
						"server": map[string]any{"tls": tls("cf_app_sd_server_tls")},
						"client": map[string]any{"ca": c["cf_app_sd_ca"]["ca"]},
					},
					"nats": map[string]any{
						"tls_enabled": true,
						"cert_chain":  c["nats_client_cert"]["certificate"],
						"private_key": c["nats_client_cert"]["private_key"],
					},
				}}},
			},
			{
				Name: "diego-cell",
				Instances: []Instance{{Index: 3, ID: "5e2d8c4f-0b7a-4f1e-8d6c-3a9b2e1f0c7d", AZ: "z2", Bootstrap: false,
					Networks: network("10.0.16.5")}},
				Jobs: []Job{
					{Name: "garden-cni", Properties: map[string]any{
						"cni_plugin_dir": "/var/vcap/packages/silk-cni/bin",
						"cni_config_dir": "/var/vcap/jobs/silk-cni/config/cni",
						"search_domains": []string{"apps.internal"},
					}},
					{Name: "silk-cni", Properties: map[string]any{
						"dns_servers":   []string{"169.254.0.53"},
						"deny_networks": map[string]any{"always": []string{"169.254.169.254/32"}},
					}},
					{Name: "silk-daemon", Properties: map[string]any{
						"ca_cert":     c["silk_ca"]["ca"],
						"client_cert": c["silk_daemon"]["certificate"],
						"client_key":  c["silk_daemon"]["private_key"],
					}},
					{Name: "vxlan-policy-agent", Properties: map[string]any{
						"ca_cert":     c["network_policy_ca"]["ca"],
						"client_cert": c["network_policy_client"]["certificate"],
						"client_key":  c["network_policy_client"]["private_key"],
						"loggregator": map[string]any{
							"ca_cert": c["loggregator_ca"]["ca"],
							"cert":    c["loggregator_tls_agent"]["certificate"],
							"key":     c["loggregator_tls_agent"]["private_key"],
						},
					}},
					{Name: "netmon"},
					{Name: "silk-datastore-syncer"},
					{Name: "iptables-logger"},
					{Name: "bosh-dns-adapter", Properties: map[string]any{
						"internal_domains": []string{"apps.internal."},
						"dnshttps": map[string]any{
							"client": map[string]any{"tls": tls("cf_app_sd_client_tls")},
							"server": map[string]any{"ca": c["cf_app_sd_ca"]["ca"]},
						},
					}},
				},
			},
			{
				// cf-deployment's backup-and-restore/enable-backup-restore.yml.
				Name: "backup-restore",
				Instances: []Instance{{Index: 0, ID: "9a4f2c1e-6d3b-4e8a-b7c5-0f1e2d3c4b5a", AZ: "z1", Bootstrap: true,
					Networks: network("10.0.1.60")}},
				Jobs: []Job{{Name: "bbr-cfnetworkingdb", Properties: map[string]any{"release_level_backup": true}}},
			},
			{
				// An errand VM, as upstream's CI deploys performance-test-sd.
				Name: "performance-test-sd",
				Instances: []Instance{{Index: 0, ID: "3c6e1f9a-2b4d-4a7e-9c1f-8d2e5b7a0f13", AZ: "z1", Bootstrap: true,
					Networks: network("10.0.1.70")}},
				Jobs: []Job{{Name: "performance-test-sd"}},
			},
		},
		ExternalLinks: map[string]Link{
			"database": {Instances: []LinkInstance{{Address: "10.0.1.40"}}},
			"cloud_controller_https_endpoint": {Properties: map[string]any{"cc": map[string]any{
				"internal_service_hostname": "cloud-controller-ng.service.cf.internal",
				"public_tls":                map[string]any{"port": 9024, "ca_cert": c["uaa_ca"]["ca"]},
			}}},
			"cloud_controller_mtls_endpoint": {Properties: map[string]any{"cc": map[string]any{
				"internal_service_hostname": "cloud-controller-ng.service.cf.internal",
				"tls_port":                  9023,
				"mutual_tls":                map[string]any{"ca_cert": c["service_cf_internal_ca"]["ca"]},
			}}},
			"cloud_controller_container_networking_info": {Properties: map[string]any{"cc": map[string]any{
				"internal_route_vip_range": "127.128.0.0/9",
			}}},
			// nats-release's nats job.
			"nats": {
				Properties: map[string]any{"nats": map[string]any{
					"hostname": "nats.service.cf.internal", "port": 4222, "user": "nats", "password": "nats-secret",
				}},
				Instances: []LinkInstance{{Address: "10.0.1.50"}, {Address: "10.0.1.51"}},
			},
			"nats-tls": {
				Properties: map[string]any{"nats": map[string]any{
					"hostname": "nats.service.cf.internal", "port": 4224, "user": "nats", "password": "nats-secret",
					"external": map[string]any{"tls": map[string]any{"ca": c["nats_ca"]["ca"]}},
				}},
				Instances: []LinkInstance{{Address: "10.0.1.50"}},
			},
			"iptables": {Properties: map[string]any{"garden": map[string]any{
				"iptables_bin_dir": "/var/vcap/packages/iptables/sbin",
			}}},
		},
	}
}

// withJob returns a copy of d in which fn has changed the named job.
func withJob(t testing.TB, d Deployment, job string, fn func(*Job)) Deployment {
	t.Helper()
	d = cloneDeployment(t, d)
	for i := range d.InstanceGroups {
		for j := range d.InstanceGroups[i].Jobs {
			if d.InstanceGroups[i].Jobs[j].Name == job {
				if d.InstanceGroups[i].Jobs[j].Properties == nil {
					d.InstanceGroups[i].Jobs[j].Properties = map[string]any{}
				}
				fn(&d.InstanceGroups[i].Jobs[j])
				return d
			}
		}
	}
	t.Fatalf("no job %s in the deployment", job)
	return d
}

// setProp sets a dotted property in a manifest properties map.
func setProp(props map[string]any, name string, value any) {
	keys := strings.Split(name, ".")
	for _, k := range keys[:len(keys)-1] {
		next, ok := props[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			props[k] = next
		}
		props = next
	}
	if value == nil {
		delete(props, keys[len(keys)-1])
		return
	}
	props[keys[len(keys)-1]] = value
}

func cloneDeployment(t testing.TB, d Deployment) Deployment {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	var out Deployment
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// jobNames lists the job directories of the release.
func jobNames(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(repoRoot(t), "jobs"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return names
}
