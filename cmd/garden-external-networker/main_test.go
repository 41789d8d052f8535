package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

var (
	buildOnce sync.Once
	pluginDir string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := maintest.Run(m, "garden-external-networker", main)
	if pluginDir != "" {
		os.RemoveAll(pluginDir)
	}
	os.Exit(code)
}

// plugins builds the fake CNI plugin into a directory (the CNI_PATH).
func plugins(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if pluginDir, buildErr = os.MkdirTemp("", "gen-plugins-"); buildErr != nil {
			return
		}
		out, err := exec.Command("go", "build", "-o", filepath.Join(pluginDir, "fake-plugin"), "./testdata/fakeplugin").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build fakeplugin: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return pluginDir
}

// run runs the command with stdin and returns its exit code and output.
func run(t *testing.T, stdin string, extra []*os.File, args ...string) (int, string, string) {
	t.Helper()
	cmd := maintest.Command(args...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.ExtraFiles = extra
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func TestRunByHand(t *testing.T) {
	for _, args := range [][]string{nil, {"-h"}, {"--help"}} {
		code, stdout, stderr := run(t, "invalid json", nil, args...)
		if code != 1 || stdout != "" || stderr != "cfnetworking: this is a plugin for Garden-runC.  Don't run it directly.\n" {
			t.Errorf("%v: exit %d stdout %q stderr %q", args, code, stdout, stderr)
		}
	}
}

// networker is one garden-external-networker setup: config, CNI config
// dir with a two-plugin chain of fake plugins, and what they record.
type networker struct {
	t      *testing.T
	dir    string
	config string
	record string
	cfg    map[string]any
}

func newNetworker(t *testing.T) *networker {
	netnstest.RequireRoot(t)
	n := &networker{t: t, dir: t.TempDir()}
	n.record = filepath.Join(n.dir, "calls.jsonl")
	confDir := filepath.Join(n.dir, "cni")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	list := map[string]any{"cniVersion": "1.0.0", "name": "garden-net", "disableCheck": true, "plugins": []any{
		map[string]any{"type": "fake-plugin", "fake_ip": "10.255.30.5/24", "fake_dns": []string{"169.254.0.53"}, "record": n.record},
		map[string]any{"type": "fake-plugin", "record": n.record, "chained": true},
	}}
	configtest.WriteFile(t, filepath.Join(confDir, "garden.conflist"), list)
	n.cfg = map[string]any{
		"cni_plugin_dir": plugins(t), "cni_config_dir": confDir, "cni_cache_dir": filepath.Join(n.dir, "cni-cache"),
		"bind_mount_dir": filepath.Join(n.dir, "container-netns"), "state_file": filepath.Join(n.dir, "state.json"),
		"start_port": 61000, "total_ports": 3, "log_prefix": "prefix", "search_domains": []string{"apps.internal"},
		"iptables_lock_file": filepath.Join(n.dir, "iptables.lock"), "proxy_redirect_cidr": "10.255.0.0/16",
		"proxy_port": 15001, "proxy_uid": 0,
	}
	n.config = filepath.Join(n.dir, "adapter.json")
	configtest.WriteFile(t, n.config, n.cfg)
	return n
}

func (n *networker) bindPath(handle string) string {
	return filepath.Join(n.cfg["bind_mount_dir"].(string), handle)
}

func (n *networker) run(action, handle, stdin string, extra ...*os.File) (int, string, string) {
	return run(n.t, stdin, extra, "--configFile", n.config, "--action", action, "--handle", handle)
}

// up runs up and registers a down for the end of the test.
func (n *networker) up(handle, stdin string, extra ...*os.File) (int, string, string) {
	n.t.Cleanup(func() {
		if code, _, stderr := n.run("down", handle, "null"); code != 0 {
			n.t.Errorf("cleanup down %s: %s", handle, stderr)
		}
	})
	return n.up0(handle, stdin, extra...)
}

func (n *networker) up0(handle, stdin string, extra ...*os.File) (int, string, string) {
	return n.run("up", handle, stdin, extra...)
}

func (n *networker) state() string {
	b, err := os.ReadFile(n.cfg["state_file"].(string))
	if err != nil && !os.IsNotExist(err) {
		n.t.Fatal(err)
	}
	return string(b)
}

type call struct {
	Env   map[string]string `json:"env"`
	Stdin map[string]any    `json:"stdin"`
}

// calls returns the plugin calls recorded since the last calls.
func (n *networker) calls() []call {
	f, err := os.Open(n.record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		n.t.Fatal(err)
	}
	defer f.Close()
	var out []call
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c call
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			n.t.Fatal(err)
		}
		out = append(out, c)
	}
	_ = os.Remove(n.record)
	return out
}

// container starts a process in a fresh network namespace, as Garden's
// container init; it is killed (by PID) when the test ends.
func container(t *testing.T) (*netnstest.NS, int) {
	ns := netnstest.New(t, "gc")
	return ns, ns.Start(t, "sleep", "300")
}

func sameFile(t *testing.T, a, b string) bool {
	t.Helper()
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

func mounted(t *testing.T, path string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func TestUpDown(t *testing.T) {
	n := newNetworker(t)
	ns, pid := container(t)
	handle := netnstest.UniqueName("handle-")

	stdin := fmt.Sprintf(`{"Pid": %d, "Properties": {"app_id": "app-guid", "policy_group_id": "app-guid", "ports": "8080"},
		"netout_rules": [{"protocol": 1, "networks": [{"start": "8.8.8.8", "end": "9.9.9.9"}], "ports": [{"start": 53, "end": 54}], "log": true}],
		"netin": [{"host_port": 0, "container_port": 8080}, {"host_port": 1234, "container_port": 2222}, {"host_port": 0, "container_port": 9090}]}`, pid)
	code, stdout, stderr := n.up(handle, stdin)
	if code != 0 || stderr != "" {
		t.Fatalf("up: exit %d stderr %q", code, stderr)
	}
	want := `{"properties":{"garden.network.container-ip":"10.255.30.5","garden.network.host-ip":"255.255.255.255",` +
		`"garden.network.mapped-ports":"[{\"HostPort\":61000,\"ContainerPort\":8080},{\"HostPort\":1234,\"ContainerPort\":2222},{\"HostPort\":61001,\"ContainerPort\":9090}]",` +
		`"garden.network.interface":"eth0"},"dns_servers":["169.254.0.53"],"search_domains":["apps.internal"]}` + "\n"
	if stdout != want {
		t.Errorf("stdout\n got %s\nwant %s", stdout, want)
	}

	t.Run("the namespace is bind-mounted", func(t *testing.T) {
		if !mounted(t, n.bindPath(handle)) || !sameFile(t, n.bindPath(handle), fmt.Sprintf("/proc/%d/ns/net", pid)) || !sameFile(t, n.bindPath(handle), ns.Path) {
			t.Error("bind mount is not the container's namespace")
		}
	})
	t.Run("ports are allocated lowest first", func(t *testing.T) {
		if got := n.state(); got != `{"acquired_ports":{"`+handle+`":[61000,61001]}}`+"\n" {
			t.Errorf("state file %s", got)
		}
	})
	t.Run("each plugin got the chain's ADD", func(t *testing.T) {
		calls := n.calls()
		if len(calls) != 2 {
			t.Fatalf("calls %+v", calls)
		}
		env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": handle, "CNI_IFNAME": "eth0",
			"CNI_PATH": n.cfg["cni_plugin_dir"].(string), "CNI_NETNS": n.bindPath(handle), "CNI_ARGS": ""}
		rc := map[string]any{
			"portMappings": []any{
				map[string]any{"host_port": 61000.0, "container_port": 8080.0},
				map[string]any{"host_port": 1234.0, "container_port": 2222.0},
				map[string]any{"host_port": 61001.0, "container_port": 9090.0},
			},
			"netOutRules": []any{map[string]any{"protocol": 1.0, "networks": []any{map[string]any{"start": "8.8.8.8", "end": "9.9.9.9"}},
				"ports": []any{map[string]any{"start": 53.0, "end": 54.0}}, "log": true}},
		}
		md := map[string]any{"app_id": "app-guid", "policy_group_id": "app-guid", "ports": "8080"}
		for i, c := range calls {
			if diff := cmp.Diff(env, c.Env); diff != "" {
				t.Errorf("plugin %d env (-want +got):\n%s", i, diff)
			}
			if diff := cmp.Diff(rc, c.Stdin["runtimeConfig"]); diff != "" {
				t.Errorf("plugin %d runtimeConfig (-want +got):\n%s", i, diff)
			}
			if diff := cmp.Diff(md, c.Stdin["metadata"]); diff != "" {
				t.Errorf("plugin %d metadata (-want +got):\n%s", i, diff)
			}
			if c.Stdin["name"] != "garden-net" || c.Stdin["cniVersion"] != "1.0.0" {
				t.Errorf("plugin %d stdin %v", i, c.Stdin)
			}
		}
		if calls[0].Stdin["prevResult"] != nil || calls[1].Stdin["prevResult"] == nil {
			t.Error("the chain did not pass the result on")
		}
	})
	t.Run("the proxy redirect is in the container", func(t *testing.T) {
		if out := ns.Run(t, "iptables", "-w", "-t", "nat", "-S", "OUTPUT"); !strings.Contains(out, "-A OUTPUT -d 10.255.0.0/16 -p tcp -j REDIRECT --to-ports 15001\n") {
			t.Errorf("container nat OUTPUT:\n%s", out)
		}
	})

	t.Run("another container gets the next port; then the pool is exhausted", func(t *testing.T) {
		_, pid2 := container(t)
		h2 := netnstest.UniqueName("handle-")
		if code, stdout, stderr := n.up(h2, fmt.Sprintf(`{"pid": %d, "netin": [{"host_port": 0, "container_port": 1}]}`, pid2)); code != 0 ||
			!strings.Contains(stdout, `[{\"HostPort\":61002,\"ContainerPort\":1}]`) {
			t.Fatalf("up: %d %s %s", code, stdout, stderr)
		}
		h3 := netnstest.UniqueName("handle-")
		code, stdout, stderr := n.up(h3, fmt.Sprintf(`{"pid": %d, "netin": [{"host_port": 0, "container_port": 1}]}`, pid2))
		if code != 1 || stdout != "" || stderr != "prefix: allocating port: acquire port: port pool exhausted\n" {
			t.Errorf("exhausted: %d %q %q", code, stdout, stderr)
		}
		n.calls()
	})

	// Down, twice: DEL gets the cached result the first time only.
	for i := range 2 {
		if code, stdout, stderr := n.run("down", handle, "null"); code != 0 || stdout != "" || stderr != "" {
			t.Fatalf("down %d: exit %d stdout %q stderr %q", i, code, stdout, stderr)
		}
		calls := n.calls()
		if len(calls) != 2 || calls[0].Env["CNI_COMMAND"] != "DEL" || calls[0].Stdin["chained"] != true {
			t.Fatalf("down %d: calls %+v", i, calls)
		}
		for _, c := range calls {
			if _, ok := c.Stdin["metadata"]; ok {
				t.Errorf("DEL got metadata: %v", c.Stdin)
			}
			if _, got := c.Stdin["prevResult"]; got != (i == 0) {
				t.Errorf("down %d: prevResult %v", i, c.Stdin["prevResult"])
			}
		}
		if _, err := os.Lstat(n.bindPath(handle)); !os.IsNotExist(err) || mounted(t, n.bindPath(handle)) {
			t.Errorf("down %d left the bind mount: %v", i, err)
		}
		if strings.Contains(n.state(), handle) {
			t.Errorf("down %d left the ports: %s", i, n.state())
		}
	}
}

func TestUpWithNamespaceOnFD3(t *testing.T) {
	n := newNetworker(t)
	ns, _ := container(t)
	f, err := os.Open(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	handle := netnstest.UniqueName("handle-")
	code, stdout, stderr := n.up(handle, `{"pid": 0}`, f)
	if code != 0 || !strings.Contains(stdout, `"garden.network.mapped-ports":"[]"`) {
		t.Fatalf("up: %d %s %s", code, stdout, stderr)
	}
	if !sameFile(t, n.bindPath(handle), ns.Path) {
		t.Error("bind mount is not the namespace passed on fd 3")
	}

	// Without a namespace on fd 3 up fails (where depends on what fd 3
	// happens to be), as upstream's.
	code, stdout, stderr = n.up(netnstest.UniqueName("handle-"), `{"pid": 0}`)
	if code != 1 || stdout != "" || !strings.HasPrefix(stderr, "prefix: ") {
		t.Errorf("no fd 3: %d %q %q", code, stdout, stderr)
	}
}

func TestCNIFailure(t *testing.T) {
	n := newNetworker(t)
	_, pid := container(t)
	// Make the first plugin fail ADD.
	confDir := n.cfg["cni_config_dir"].(string)
	list := `{"cniVersion":"1.0.0","name":"garden-net","plugins":[{"type":"fake-plugin","fail":"no lease"}]}`
	if err := os.WriteFile(filepath.Join(confDir, "garden.conflist"), []byte(list), 0o600); err != nil {
		t.Fatal(err)
	}
	handle := netnstest.UniqueName("handle-")
	code, stdout, stderr := n.up(handle, fmt.Sprintf(`{"pid": %d}`, pid))
	if want := `prefix: cni up failed: add network list failed: plugin type="fake-plugin" failed (add): no lease` + "\n"; code != 1 || stdout != "" || stderr != want {
		t.Errorf("exit %d stdout %q stderr %q", code, stdout, stderr)
	}
}
