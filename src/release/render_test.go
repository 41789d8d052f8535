package release

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/discovery/adapter"
	"github.com/netman-release/netman/src/discovery/perftestsd"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/gardennet"
	"github.com/netman-release/netman/src/healthchecker"
	"github.com/netman-release/netman/src/iptableslogger"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/netmon"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/policyserver/bbr"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/silk/bootstrap"
	silkcni "github.com/netman-release/netman/src/silk/cni"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/daemon"
)

// rendering is one successful rendering of a deployment.
type rendering struct {
	out    string
	result Result
}

func render(t *testing.T, d Deployment, targets ...Target) rendering {
	t.Helper()
	out := t.TempDir()
	res, err := Render(repoRoot(t), out, d, targets...)
	if err != nil {
		t.Fatal(err)
	}
	return rendering{out: out, result: res}
}

// mustRender renders and fails on any template error.
func mustRender(t *testing.T, d Deployment, targets ...Target) rendering {
	t.Helper()
	r := render(t, d, targets...)
	for _, e := range r.result.Errors {
		t.Errorf("render: %s", e)
	}
	if t.Failed() {
		t.FailNow()
	}
	return r
}

// file finds a rendered destination of a job.
func (r rendering) file(t *testing.T, job, dest string) Rendered {
	t.Helper()
	for _, f := range r.result.Rendered {
		if f.Job == job && f.Dest == dest {
			return f
		}
	}
	t.Fatalf("%s: %s was not rendered", job, dest)
	return Rendered{}
}

// localize copies a rendered config so that its /var/vcap/jobs/ paths point
// at the rendered job directories, where the certificate files the job
// renders are; a loader that checks its files then checks those.
func (r rendering) localize(t *testing.T, f Rendered) string {
	t.Helper()
	data, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	jobs := filepath.Join(r.out, f.InstanceGroup) + "/"
	data = bytes.ReplaceAll(data, []byte("/var/vcap/jobs/"), []byte(jobs))
	path := filepath.Join(t.TempDir(), filepath.Base(f.Dest))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// configCheck names how a rendered daemon config is loaded and what it must
// contain.
type configCheck struct {
	job, dest string
	// load is the daemon's own config loader.
	load func(path string) error
	// strict, when set, is the config struct: a rendered key it does not
	// know is a typo the loader would silently ignore.
	strict func() any
	// example is the config/ example whose keys the template must render,
	// except the netman-only ones.
	example    string
	netmanOnly []string
}

func configChecks() []configCheck {
	return []configCheck{
		{
			job: "silk-controller", dest: "config/silk-controller.json",
			load:    func(p string) error { _, err := controller.LoadConfig(p); return err },
			strict:  func() any { return &controller.Config{} },
			example: "silk-controller.json", netmanOnly: []string{"log_level"},
		},
		{
			job: "silk-daemon", dest: "config/client-config.json",
			load:    func(p string) error { _, err := daemon.LoadConfig(p); return err },
			strict:  func() any { return &daemon.Config{} },
			example: "silk-daemon.json", netmanOnly: []string{"mtu"},
		},
		{
			job: "silk-daemon", dest: "config/bootstrap-config.json",
			load:    func(p string) error { _, err := bootstrap.LoadConfig(p); return err },
			strict:  func() any { return &bootstrap.Config{} },
			example: "silk-daemon-bootstrap.json",
		},
		{
			job: "silk-daemon", dest: "config/healthchecker.yml",
			load:   func(p string) error { _, err := healthchecker.LoadConfig(p); return err },
			strict: func() any { return &healthchecker.Config{} },
		},
		{
			job: "bosh-dns-adapter", dest: "config/healthchecker.yml",
			load:   func(p string) error { _, err := healthchecker.LoadConfig(p); return err },
			strict: func() any { return &healthchecker.Config{} },
		},
		{
			job: "policy-server", dest: "config/policy-server.json",
			load:    func(p string) error { _, err := external.LoadConfig(p); return err },
			strict:  func() any { return &external.Config{} },
			example: "policy-server.json", netmanOnly: []string{"auth_tokens_file", "cc_app_request_chunk_size"},
		},
		{
			job: "policy-server-internal", dest: "config/policy-server-internal.json",
			load:    func(p string) error { _, err := internalapi.LoadConfig(p); return err },
			strict:  func() any { return &internalapi.Config{} },
			example: "policy-server-internal.json",
		},
		{
			job: "policy-server-asg-syncer", dest: "config/policy-server-asg-syncer.json",
			load:    func(p string) error { _, err := asgsyncer.LoadConfig(p); return err },
			strict:  func() any { return &asgsyncer.Config{} },
			example: "policy-server-asg-syncer.json",
		},
		{
			job: "vxlan-policy-agent", dest: "config/vxlan-policy-agent.json",
			load:    func(p string) error { _, err := agent.LoadConfig(p); return err },
			strict:  func() any { return &agent.Config{} },
			example: "vxlan-policy-agent.json", netmanOnly: []string{"iptables_flavor", "long_poll_wait_seconds"},
		},
		{
			job: "iptables-logger", dest: "config/iptables-logger.json",
			load:    func(p string) error { _, err := iptableslogger.LoadConfig(p); return err },
			strict:  func() any { return &iptableslogger.Config{} },
			example: "iptables-logger.json", netmanOnly: []string{"log_prefix", "log_level"},
		},
		{
			job: "netmon", dest: "config/netmon.json",
			load:    func(p string) error { _, err := netmon.LoadConfig(p); return err },
			strict:  func() any { return &netmon.Config{} },
			example: "netmon.json", netmanOnly: []string{"iptables_flavor"},
		},
		{
			job: "garden-cni", dest: "config/adapter.json",
			load:    func(p string) error { _, err := gardennet.LoadConfig(p); return err },
			strict:  func() any { return &gardennet.Config{} },
			example: "garden-external-networker.json", netmanOnly: []string{"cni_cache_dir"},
		},
		{
			job: "bosh-dns-adapter", dest: "config/config.json",
			load:    func(p string) error { _, err := adapter.LoadConfig(p); return err },
			strict:  func() any { return &adapter.Config{} },
			example: "bosh-dns-adapter.json",
		},
		{
			job: "service-discovery-controller", dest: "config/config.json",
			load:    func(p string) error { _, err := sdcontroller.LoadConfig(p); return err },
			strict:  func() any { return &sdcontroller.Config{} },
			example: "service-discovery-controller.json",
		},
		{
			job: "silk-cni", dest: "config/cni/cni-wrapper-plugin.conflist",
			load: loadConflist,
			// ipv6_overlay_network and instance_address_ipv6 render on
			// dual-stack cells only (variants_test.go).
			example: "cni-wrapper-plugin.conflist", netmanOnly: []string{"iptables_flavor", "ipv6_overlay_network", "instance_address_ipv6"},
		},
		{
			job: "bbr-cfnetworkingdb", dest: "config/config.json",
			load:    func(p string) error { _, err := bbr.LoadConfig(p); return err },
			strict:  func() any { return &bbr.Config{} },
			example: "bbr-cfnetworkingdb.json",
		},
		{
			job: "performance-test-sd", dest: "config.json",
			load: func(p string) error {
				c, err := perftestsd.LoadConfig(p)
				if err == nil && c.NatsURL != "10.0.1.50,10.0.1.51" {
					err = fmt.Errorf("nats_url %q, want the nats link's instances", c.NatsURL)
				}
				return err
			},
			strict:  func() any { return &perftestsd.Config{} },
			example: "performance-test-sd.json",
		},
		{
			job: "silk-cni", dest: "config/teardown-config.json",
			load: func(p string) error {
				c, err := silkcni.LoadTeardownConfig(p)
				if err == nil && len(c.PathsToDelete) == 0 {
					err = fmt.Errorf("no paths_to_delete")
				}
				return err
			},
		},
	}
}

// loadConflist loads the conflist as garden-external-networker (libcni)
// does, then each plugin's stdin as that plugin does.
func loadConflist(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	list, err := libcni.ConfListFromBytes(data)
	if err != nil {
		return fmt.Errorf("libcni: %w", err)
	}
	if len(list.Plugins) != 2 || list.Plugins[0].Network.Type != "cni-wrapper-plugin" || list.Plugins[1].Network.Type != "bandwidth" {
		return fmt.Errorf("want the plugins cni-wrapper-plugin then bandwidth, got %d plugins", len(list.Plugins))
	}
	wrapperConf := list.Plugins[0].Bytes
	if err := strictDecode(wrapperConf, &cniwrapper.Config{}); err != nil {
		return fmt.Errorf("cni-wrapper-plugin entry: %w", err)
	}
	wrapper, err := cniwrapper.LoadConfig(wrapperConf)
	if err != nil {
		return fmt.Errorf("cni-wrapper-plugin: %w", err)
	}
	delegate, err := json.Marshal(wrapper.Delegate)
	if err != nil {
		return err
	}
	if err := strictDecode(delegate, &silkcni.NetConf{}); err != nil {
		return fmt.Errorf("delegate: %w", err)
	}
	conf, err := silkcni.ParseNetConf(delegate)
	if err != nil {
		return fmt.Errorf("silk-cni: %w", err)
	}
	if err := conf.Validate(); err != nil {
		return fmt.Errorf("silk-cni: %w", err)
	}
	var bw map[string]any
	if err := json.Unmarshal(list.Plugins[1].Bytes, &bw); err != nil {
		return err
	}
	for _, k := range []string{"ingressRate", "ingressBurst", "egressRate", "egressBurst"} {
		if _, ok := bw[k].(float64); !ok {
			return fmt.Errorf("bandwidth: %s missing or not a number", k)
		}
	}
	return nil
}

func strictDecode(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// keysOf lists the top-level keys of a JSON object (for a conflist: of its
// first plugin).
func keysOf(t *testing.T, data []byte, conflist bool) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	if conflist {
		var plugins []map[string]json.RawMessage
		if err := json.Unmarshal(m["plugins"], &plugins); err != nil || len(plugins) == 0 {
			t.Fatalf("conflist without plugins: %v", err)
		}
		m = plugins[0]
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TestRenderEveryTemplate renders every template of every job for the
// representative manifest: nothing fails, every JSON and YAML file parses,
// every script passes bash -n, and every daemon config loads and validates
// with the daemon's own loader.
func TestRenderEveryTemplate(t *testing.T) {
	requireRuby(t)
	root := repoRoot(t)
	d := cfDeployment(t)
	r := mustRender(t, d)

	jobs, _, err := Specs(root)
	if err != nil {
		t.Fatal(err)
	}
	deployed := map[string]bool{}
	for _, ig := range d.InstanceGroups {
		for _, j := range ig.Jobs {
			deployed[j.Name] = true
		}
	}
	for name, spec := range jobs {
		if !deployed[name] {
			t.Errorf("job %s is not in the representative manifest, so its templates are never rendered", name)
			continue
		}
		templates, _ := spec["templates"].(map[string]any)
		for tpl, dest := range templates {
			r.file(t, name, dest.(string))
			_ = tpl
		}
		r.file(t, name, "monit")
	}

	for _, f := range r.result.Rendered {
		checkSyntax(t, f)
	}
	for _, c := range configChecks() {
		t.Run(c.job+"/"+c.dest, func(t *testing.T) {
			f := r.file(t, c.job, c.dest)
			path := r.localize(t, f)
			if err := c.load(path); err != nil {
				t.Fatalf("%s does not load: %v\n%s", c.dest, err, readFile(t, f.Path))
			}
			data := readFile(t, f.Path)
			if c.strict != nil {
				if err := strictDecode(data, c.strict()); err != nil {
					t.Errorf("%s renders a key the daemon does not know: %v", c.dest, err)
				}
			}
			if c.example != "" {
				conflist := strings.HasSuffix(c.example, ".conflist")
				example, err := os.ReadFile(filepath.Join(root, "config", c.example))
				if err != nil {
					t.Fatal(err)
				}
				rendered := keysOf(t, data, conflist)
				for _, k := range keysOf(t, example, conflist) {
					if !slices.Contains(rendered, k) && !slices.Contains(c.netmanOnly, k) {
						t.Errorf("%s does not render %q, which config/%s has", c.dest, k, c.example)
					}
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// checkSyntax checks a rendered file by its kind: JSON parses, YAML parses,
// scripts are bash and pass bash -n.
func checkSyntax(t *testing.T, f Rendered) {
	t.Helper()
	data := readFile(t, f.Path)
	name := f.Job + "/" + f.Dest
	switch {
	case strings.HasSuffix(f.Dest, ".json") || strings.HasSuffix(f.Dest, ".conflist"):
		if !json.Valid(data) {
			t.Errorf("%s is not valid JSON:\n%s", name, data)
		}
	case strings.HasSuffix(f.Dest, ".yml"):
		if f.YAMLError != "" {
			t.Errorf("%s is not valid YAML: %s\n%s", name, f.YAMLError, data)
		}
	case strings.HasPrefix(f.Dest, "bin/"):
		if !bytes.HasPrefix(data, []byte("#!/bin/bash\n")) {
			t.Errorf("%s does not start with #!/bin/bash", name)
		}
		if out, err := exec.Command("bash", "-n", f.Path).CombinedOutput(); err != nil {
			t.Errorf("%s: bash -n: %v\n%s", name, err, out)
		}
	case strings.HasSuffix(f.Dest, ".crt") || strings.HasSuffix(f.Dest, ".key"):
		// PEM or empty; checked where the cert is used.
	case f.Dest == "monit":
	default:
		t.Errorf("%s: no syntax check for this kind of file", name)
	}
}

// TestRenderedCertificatesLoad checks that each job's rendered certificate
// files form the TLS configuration its daemon builds.
func TestRenderedCertificatesLoad(t *testing.T) {
	requireRuby(t)
	r := mustRender(t, cfDeployment(t))
	path := func(job, dest string) string { return r.file(t, job, dest).Path }
	cases := []struct {
		name   string
		server bool
		job    string
		dir    string
		cert   string
		key    string
		ca     string
	}{
		{"silk-controller", true, "silk-controller", "config/certs/", "server.crt", "server.key", "ca.crt"},
		{"silk-daemon", false, "silk-daemon", "config/certs/", "client.crt", "client.key", "ca.crt"},
		{"policy-server-internal", true, "policy-server-internal", "config/certs/", "server.crt", "server.key", "ca.crt"},
		{"vxlan-policy-agent", false, "vxlan-policy-agent", "config/certs/", "client.crt", "client.key", "ca.crt"},
		{"policy-server-asg-syncer to Cloud Controller", false, "policy-server-asg-syncer", "config/certs/", "cc_internal_client.crt", "cc_internal_client.key", "cc_internal_ca.crt"},
		{"policy-server-asg-syncer to locket", false, "policy-server-asg-syncer", "config/certs/", "locket.crt", "locket.key", "locket_ca.crt"},
		{"service-discovery-controller", true, "service-discovery-controller", "config/certs/", "server.crt", "server.key", "client_ca.crt"},
		{"bosh-dns-adapter", false, "bosh-dns-adapter", "config/certs/", "client.crt", "client.key", "server_ca.crt"},
		{"service-discovery-controller to NATS", false, "service-discovery-controller", "config/certs/", "nats_cert_chain.crt", "nats_private_key.key", "nats_ca_certs.crt"},
		{"vxlan-policy-agent to loggregator", false, "vxlan-policy-agent", "config/certs/loggregator/", "client.crt", "client.key", "ca.crt"},
	}
	for _, c := range cases {
		cert, key, ca := path(c.job, c.dir+c.cert), path(c.job, c.dir+c.key), path(c.job, c.dir+c.ca)
		var err error
		if c.server {
			_, err = mtls.ServerConfig(cert, key, ca)
		} else {
			_, err = mtls.ClientConfig(cert, key, ca)
		}
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	// The external policy server is one-way TLS.
	if _, err := mtls.ServerConfig(path("policy-server", "config/certs/server.crt"),
		path("policy-server", "config/certs/server.key"), "", mtls.WithoutClientAuth()); err != nil {
		t.Errorf("policy-server: %v", err)
	}
}
