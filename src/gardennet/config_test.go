package gardennet

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

func TestExampleConfig(t *testing.T) {
	path := "../../config/garden-external-networker.json"
	cfg, err := LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	uid := 0
	want := &Config{
		CniPluginDir: "/var/vcap/packages/silk-cni/bin", CniConfigDir: "/var/vcap/jobs/silk-cni/config/cni",
		BindMountDir:  "/var/vcap/data/garden-cni/container-netns",
		StateFilePath: "/var/vcap/data/garden-cni/external-networker-state.json",
		StartPort:     61000, TotalPorts: 5000, LogPrefix: "cfnetworking", SearchDomains: []string{},
		IPTablesLockFile: "/var/vcap/data/garden-cni/iptables.lock", ProxyPort: 15001, ProxyUID: &uid,
		CNICacheDir: "/var/lib/cni",
	}
	if diff := cmp.Diff(want, cfg); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}

	// The example documents every key.
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	typ := reflect.TypeOf(Config{})
	for i := 0; i < typ.NumField(); i++ {
		key := strings.Split(typ.Field(i).Tag.Get("json"), ",")[0]
		if !strings.Contains(string(raw), `"`+key+`"`) {
			t.Errorf("config/garden-external-networker.json lacks %q", key)
		}
	}
}

func validConfig() map[string]any {
	return map[string]any{
		"cni_plugin_dir": "/plugins", "cni_config_dir": "/configs", "bind_mount_dir": "/netns",
		"state_file": "/state.json", "start_port": 61000, "total_ports": 5000, "log_prefix": "prefix",
		"iptables_lock_file": "/iptables.lock", "proxy_port": 15001, "proxy_uid": 0,
	}
}

func TestLoadConfigRequiredKeys(t *testing.T) {
	// Upstream's order: the first missing key is the one reported.
	keys := []string{"cni_plugin_dir", "cni_config_dir", "bind_mount_dir", "state_file", "start_port",
		"total_ports", "log_prefix", "iptables_lock_file", "proxy_port", "proxy_uid"}
	for i, key := range keys {
		t.Run(key, func(t *testing.T) {
			cfg := validConfig()
			for _, k := range keys[i:] {
				delete(cfg, k)
			}
			got, err := LoadConfig(configtest.Write(t, "adapter.json", cfg))
			if err == nil || err.Error() != "missing required config '"+key+"'" {
				t.Fatalf("got %v", err)
			}
			// The partly loaded config still names the log prefix.
			wantPrefix := "prefix"
			if i <= 6 {
				wantPrefix = ""
			}
			if got == nil || got.LogPrefix != wantPrefix {
				t.Errorf("config returned with the error: %+v", got)
			}
		})
	}
	t.Run("zero values count as missing", func(t *testing.T) {
		cfg := validConfig()
		cfg["start_port"] = 0
		if _, err := LoadConfig(configtest.Write(t, "adapter.json", cfg)); err == nil || err.Error() != "missing required config 'start_port'" {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("proxy_uid 0 is present", func(t *testing.T) {
		cfg, err := LoadConfig(configtest.Write(t, "adapter.json", validConfig()))
		if err != nil || cfg.ProxyUID == nil || *cfg.ProxyUID != 0 {
			t.Fatalf("got %+v, %v", cfg, err)
		}
	})
}

func TestLoadConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	_, err := LoadConfig(filepath.Join(dir, "nope.json"))
	if want := "file does not exist: stat " + dir + "/nope.json: no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("missing file: got %v, want %s", err, want)
	}

	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte("{nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadConfig(bad)
	if want := "parsing config (" + bad + "): invalid character 'n' looking for beginning of object key string"; err == nil || err.Error() != want {
		t.Errorf("bad JSON: got %v, want %s", err, want)
	}

	cfg := validConfig()
	cfg["start_port"] = -1
	_, err = LoadConfig(configtest.Write(t, "adapter.json", cfg))
	if err == nil || !strings.Contains(err.Error(), "cannot unmarshal number -1") {
		t.Errorf("negative port: got %v", err)
	}
}
