package gardennet

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/go-cmp/cmp"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func conflist(name string, types ...string) string {
	var plugins []string
	for _, typ := range types {
		plugins = append(plugins, `{"type":"`+typ+`"}`)
	}
	return `{"cniVersion":"1.0.0","name":"` + name + `","plugins":[` + strings.Join(plugins, ",") + `]}`
}

func TestLoadNetworkConfig(t *testing.T) {
	warning := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+ - Only one CNI config file or conflist \(chain\) will be executed\. .*\n$`)
	for _, tc := range []struct {
		name    string
		files   map[string]string
		list    string // network name, "" for none
		plugins []string
		warn    bool
	}{
		{name: "empty dir"},
		{name: "one conflist", files: map[string]string{"a.conflist": conflist("net-a", "p1", "p2")}, list: "net-a", plugins: []string{"p1", "p2"}},
		{name: "a conflist wins over a conf", warn: true,
			files: map[string]string{"10-x.conf": `{"cniVersion":"0.4.0","name":"net-conf","type":"p0"}`, "20-y.conflist": conflist("net-list", "p9")},
			list:  "net-list", plugins: []string{"p9"}},
		{name: "first conflist in walk order", warn: true,
			files: map[string]string{"b.conflist": conflist("net-b", "pb"), "a/z.conflist": conflist("net-az", "paz")},
			list:  "net-az", plugins: []string{"paz"}},
		{name: "a conf is upconverted", files: map[string]string{"30-bridge.conf": `{"cniVersion":"0.4.0","name":"net-conf","type":"bridge","x":1}`},
			list: "net-conf", plugins: []string{"bridge"}},
		{name: "other files are ignored", files: map[string]string{"a.json": "{", "README": "x", "n.conflist": conflist("n", "p")},
			list: "n", plugins: []string{"p"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tc.files)
			var warn bytes.Buffer
			list, err := LoadNetworkConfig(dir, &warn)
			if err != nil {
				t.Fatal(err)
			}
			if tc.list == "" {
				if list != nil {
					t.Fatalf("got a list from nothing: %+v", list)
				}
				return
			}
			var got []string
			for _, p := range list.Plugins {
				got = append(got, p.Network.Type)
			}
			if list.Name != tc.list || !cmp.Equal(got, tc.plugins) {
				t.Errorf("got %s %v", list.Name, got)
			}
			if tc.warn != warning.MatchString(warn.String()) || (!tc.warn && warn.Len() > 0) {
				t.Errorf("warning %q", warn.String())
			}
		})
	}

	t.Run("errors", func(t *testing.T) {
		dir := t.TempDir()
		_, err := LoadNetworkConfig(filepath.Join(dir, "nope"), &bytes.Buffer{})
		if want := "error loading config: lstat " + dir + "/nope: no such file or directory"; err == nil || err.Error() != want {
			t.Errorf("missing dir: %v", err)
		}
		writeFiles(t, dir, map[string]string{"bad.conflist": `{"cniVersion":"1.0.0"}`})
		_, err = LoadNetworkConfig(dir, &bytes.Buffer{})
		if want := "unable to load config from " + dir + "/bad.conflist: error parsing configuration list: no name"; err == nil || err.Error() != want {
			t.Errorf("bad conflist: %v", err)
		}
		dir = t.TempDir()
		writeFiles(t, dir, map[string]string{"bad.conf": `{"name":"x"}`})
		_, err = LoadNetworkConfig(dir, &bytes.Buffer{})
		if want := "unable to load config from " + dir + "/bad.conf: error parsing configuration: missing 'type'"; err == nil || err.Error() != want {
			t.Errorf("bad conf: %v", err)
		}
	})
}

// fakeExec stands in for plugin binaries under real libcni: it records
// each call's stdin and CNI_* variables; ADD passes prevResult on, or makes
// a result from the config's "fake_ip".
type fakeExec struct {
	calls []pluginCall
	fail  string
}

type pluginCall struct {
	Plugin string
	Env    map[string]string
	Stdin  map[string]any
}

func (f *fakeExec) ExecPlugin(_ context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	c := pluginCall{Plugin: filepath.Base(pluginPath), Env: map[string]string{}}
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			c.Env[k] = v
		}
	}
	if err := json.Unmarshal(stdin, &c.Stdin); err != nil {
		return nil, err
	}
	f.calls = append(f.calls, c)
	if f.fail != "" {
		return nil, &types.Error{Code: 999, Msg: f.fail}
	}
	if c.Env["CNI_COMMAND"] != "ADD" {
		return nil, nil
	}
	if prev, ok := c.Stdin["prevResult"]; ok {
		return json.Marshal(prev)
	}
	return json.Marshal(map[string]any{
		"cniVersion": c.Stdin["cniVersion"],
		"interfaces": []any{map[string]any{"name": "eth0", "sandbox": c.Env["CNI_NETNS"]}},
		"ips":        []any{map[string]any{"address": c.Stdin["fake_ip"], "interface": 0}},
		"dns":        map[string]any{"nameservers": []string{"169.254.0.53"}},
	})
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
	return filepath.Join(paths[0], plugin), nil
}

func (f *fakeExec) Decode(b []byte) (version.PluginInfo, error) {
	return version.PluginSupports("1.0.0"), nil
}

func TestCNIThroughLibcni(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"garden.conflist": `{"cniVersion":"1.0.0","name":"cni-wrapper","disableCheck":true,"plugins":[
		{"type":"cni-wrapper-plugin","fake_ip":"10.255.12.5/24","metadata":{"from":"file"},"runtimeConfig":{"stale":true}},
		{"type":"bandwidth","capabilities":{"bandwidth":true}}]}`})
	list, err := LoadNetworkConfig(dir, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	exec := &fakeExec{}
	cache := t.TempDir()
	c := &CNI{Lib: NewCNILibraryWithExec("/plugins", cache, exec), List: list}
	ctx := context.Background()

	metadata := map[string]any{"policy_group_id": "app-guid"}
	rc := map[string]any{"portMappings": []NetIn{{HostPort: 61000, ContainerPort: 8080}}, "netOutRules": []NetOutRule(nil)}
	result, err := c.Up(ctx, "/netns/h", "h", metadata, rc)
	if err != nil {
		t.Fatal(err)
	}
	if result == nil {
		t.Fatal("no result")
	}
	env := map[string]string{"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "h", "CNI_NETNS": "/netns/h", "CNI_IFNAME": "eth0", "CNI_PATH": "/plugins", "CNI_ARGS": ""}
	injected := map[string]any{
		"metadata":      map[string]any{"policy_group_id": "app-guid"},
		"runtimeConfig": map[string]any{"portMappings": []any{map[string]any{"host_port": 61000.0, "container_port": 8080.0}}, "netOutRules": nil},
	}
	if len(exec.calls) != 2 {
		t.Fatalf("calls: %+v", exec.calls)
	}
	for i, call := range exec.calls {
		if diff := cmp.Diff(env, call.Env); diff != "" {
			t.Errorf("plugin %d env (-want +got):\n%s", i, diff)
		}
		for k, v := range injected {
			if diff := cmp.Diff(v, call.Stdin[k]); diff != "" {
				t.Errorf("plugin %d %s (-want +got):\n%s", i, k, diff)
			}
		}
		if call.Stdin["name"] != "cni-wrapper" || call.Stdin["cniVersion"] != "1.0.0" {
			t.Errorf("plugin %d stdin %v", i, call.Stdin)
		}
	}
	// The list on disk is not changed by an up.
	if bytes.Contains(c.List.Plugins[0].Bytes, []byte("app-guid")) {
		t.Error("Up changed the loaded list")
	}
	if _, err := os.Stat(filepath.Join(cache, "results", "cni-wrapper-h-eth0")); err != nil {
		t.Errorf("libcni cached no result: %v", err)
	}

	// DEL: plugins in reverse, configs as on disk plus the cached result.
	exec.calls = nil
	if err := c.Down(ctx, "/netns/h", "h"); err != nil {
		t.Fatal(err)
	}
	if len(exec.calls) != 2 || exec.calls[0].Plugin != "bandwidth" || exec.calls[1].Plugin != "cni-wrapper-plugin" {
		t.Fatalf("DEL calls %+v", exec.calls)
	}
	del := exec.calls[1]
	env["CNI_COMMAND"] = "DEL"
	if diff := cmp.Diff(env, del.Env); diff != "" {
		t.Errorf("DEL env (-want +got):\n%s", diff)
	}
	if del.Stdin["prevResult"] == nil || !cmp.Equal(del.Stdin["metadata"], map[string]any{"from": "file"}) || !cmp.Equal(del.Stdin["runtimeConfig"], map[string]any{"stale": true}) {
		t.Errorf("DEL stdin %v", del.Stdin)
	}
	if _, err := os.Stat(filepath.Join(cache, "results", "cni-wrapper-h-eth0")); !os.IsNotExist(err) {
		t.Errorf("cache entry left after DEL: %v", err)
	}

	// A second DEL runs without prevResult.
	exec.calls = nil
	if err := c.Down(ctx, "/netns/h", "h"); err != nil {
		t.Fatal(err)
	}
	if _, ok := exec.calls[1].Stdin["prevResult"]; ok {
		t.Errorf("second DEL got a prevResult")
	}

	t.Run("empty metadata is not injected", func(t *testing.T) {
		exec.calls = nil
		if _, err := c.Up(ctx, "/netns/h", "h", map[string]any{}, rc); err != nil {
			t.Fatal(err)
		}
		if !cmp.Equal(exec.calls[0].Stdin["metadata"], map[string]any{"from": "file"}) {
			t.Errorf("metadata %v", exec.calls[0].Stdin["metadata"])
		}
	})
	t.Run("plugin errors", func(t *testing.T) {
		exec.fail = "no lease"
		_, err := c.Up(ctx, "/netns/h", "h", nil, rc)
		if want := `add network list failed: plugin type="cni-wrapper-plugin" failed (add): no lease`; err == nil || err.Error() != want {
			t.Errorf("got %v", err)
		}
		err = c.Down(ctx, "/netns/h", "h")
		if want := `del network failed: plugin type="bandwidth" failed (delete): no lease`; err == nil || err.Error() != want {
			t.Errorf("got %v", err)
		}
	})
	t.Run("no config", func(t *testing.T) {
		c := &CNI{Lib: NewCNILibraryWithExec("/plugins", cache, exec)}
		if r, err := c.Up(ctx, "/netns/h", "h", nil, rc); r != nil || err != nil {
			t.Errorf("got %v %v", r, err)
		}
		if err := c.Down(ctx, "/netns/h", "h"); err != nil {
			t.Error(err)
		}
	})
}
