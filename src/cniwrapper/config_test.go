package cniwrapper

import (
	"encoding/json"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/configtest"
)

// exampleStdin is what libcni hands the first plugin of
// config/cni-wrapper-plugin.conflist: the plugin entry plus the list's name
// and cniVersion.
func exampleStdin(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile("../../config/cni-wrapper-plugin.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Name       string           `json:"name"`
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	p := list.Plugins[0]
	p["name"], p["cniVersion"] = list.Name, list.CNIVersion
	return p
}

func TestExampleConflistLoads(t *testing.T) {
	stdin := exampleStdin(t)
	cfg, err := LoadConfig(configtest.JSON(t, stdin))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Type != "cni-wrapper-plugin" || cfg.Name != "cni-wrapper" || cfg.CNIVersion != "1.0.0" ||
		cfg.Datastore != "/var/vcap/data/container-metadata/store.json" || cfg.IPTablesLockFile != "/var/vcap/data/garden-cni/iptables.lock" ||
		cfg.VTEPName != "silk-vtep" || cfg.IngressTag != "ffff0000" || cfg.PolicyAgentForcePollAddress != "127.0.0.1:8722" ||
		cfg.OutConn.Burst != 1000 || cfg.OutConn.RatePerSec != 100 || cfg.Delegate["type"] != "silk-cni" ||
		len(cfg.DenyNetworks.Always) != 1 || cfg.IPTablesDeniedLogsPerSec != 1 || cfg.IPTablesAcceptedUDPLogsPerSec != 100 {
		t.Errorf("unexpected config: %+v", cfg)
	}

	// Every key the plugin reads is in the example, so it documents them all.
	var keys []string
	collect(reflect.TypeOf(Config{}), "", &keys)
	var missing []string
	for _, k := range keys {
		if !hasKey(stdin, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("keys missing from config/cni-wrapper-plugin.conflist: %q", missing)
	}
}

// collect lists the JSON keys of the plugin's own config (not the runtime's).
func collect(typ reflect.Type, prefix string, out *[]string) {
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		switch name {
		case "", "-", "runtimeConfig", "metadata", "delegate":
			if name == "delegate" {
				*out = append(*out, prefix+name)
			}
			continue
		}
		if f.Type.Kind() == reflect.Struct {
			collect(f.Type, prefix+name+".", out)
			continue
		}
		*out = append(*out, prefix+name)
	}
	sort.Strings(*out)
}

func hasKey(m map[string]any, dotted string) bool {
	parts := strings.SplitN(dotted, ".", 2)
	v, ok := m[parts[0]]
	if !ok || len(parts) == 1 {
		return ok
	}
	sub, _ := v.(map[string]any)
	return hasKey(sub, parts[1])
}

func TestConfigValidationMessages(t *testing.T) {
	for _, tc := range []struct {
		key   string
		value any // nil: delete the key
		want  string
	}{
		{"datastore", nil, "missing datastore path"},
		{"iptables_lock_file", nil, "missing iptables lock file path"},
		{"instance_address", nil, "missing instance address"},
		{"underlay_ips", nil, "missing underlay ips"},
		{"underlay_ips", []string{}, "missing underlay ips"},
		{"ingress_tag", nil, "missing ingress tag"},
		{"vtep_name", nil, "missing vtep device name"},
		{"iptables_denied_logs_per_sec", nil, "invalid denied logs per sec"},
		{"iptables_denied_logs_per_sec", -1, "invalid denied logs per sec"},
		{"iptables_accepted_udp_logs_per_sec", 0, "invalid accepted udp logs per sec"},
		{"outbound_connections", map[string]any{"burst": -1, "rate_per_sec": 100}, "invalid outbound connection burst"},
		{"outbound_connections", map[string]any{"burst": 1, "rate_per_sec": -1}, "invalid outbound connection rate"},
		{"policy_agent_force_poll_address", "", "validator: PolicyAgentForcePollAddress: zero value"},
		{"iptables_flavor", "nftables", `iptables: unknown flavor "nftables" (want nft or legacy)`},
		{"enforcement_backend", "nft", `invalid enforcement backend "nft" (want iptables or nftables)`},
	} {
		t.Run(tc.key, func(t *testing.T) {
			stdin := exampleStdin(t)
			if tc.value == nil {
				delete(stdin, tc.key)
			} else {
				stdin[tc.key] = tc.value
			}
			_, err := LoadConfig(configtest.JSON(t, stdin))
			if err == nil || err.Error() != tc.want {
				t.Errorf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := LoadConfig([]byte("}{")); err == nil || !strings.HasPrefix(err.Error(), "loading wrapper config: ") {
		t.Errorf("malformed: %v", err)
	}
}

func TestEnforcementBackendDefaultsToIPTables(t *testing.T) {
	stdin := exampleStdin(t)
	for _, tc := range []struct {
		value any // nil: no key
		want  string
		nft   bool
	}{{nil, "iptables", false}, {"", "iptables", false}, {"iptables", "iptables", false}, {"nftables", "nftables", true}} {
		if tc.value == nil {
			delete(stdin, "enforcement_backend")
		} else {
			stdin["enforcement_backend"] = tc.value
		}
		cfg, err := LoadConfig(configtest.JSON(t, stdin))
		if err != nil {
			t.Fatalf("%v: %v", tc.value, err)
		}
		if cfg.EnforcementBackend != tc.want || cfg.NFTables() != tc.nft {
			t.Errorf("enforcement_backend %v: got %q (nftables %t)", tc.value, cfg.EnforcementBackend, cfg.NFTables())
		}
	}
}

func TestDelegateGetsDefaultCNIVersion(t *testing.T) {
	stdin := exampleStdin(t)
	stdin["delegate"] = map[string]any{"type": "silk-cni"}
	cfg, err := LoadConfig(configtest.JSON(t, stdin))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]any{"type": "silk-cni", "cniVersion": "1.0.0"}, cfg.Delegate); diff != "" {
		t.Error(diff)
	}
	stdin["delegate"] = map[string]any{"type": "silk-cni", "cniVersion": "0.3.1"}
	cfg, _ = LoadConfig(configtest.JSON(t, stdin))
	if cfg.Delegate["cniVersion"] != "0.3.1" {
		t.Errorf("explicit version overridden: %v", cfg.Delegate)
	}
}

func TestRuntimeKeysParse(t *testing.T) {
	stdin := exampleStdin(t)
	stdin["runtimeConfig"] = map[string]any{
		"portMappings": []any{map[string]any{"host_port": 61000, "container_port": 8080}},
		"netOutRules": []any{
			map[string]any{"protocol": 1, "networks": []any{map[string]any{"start": "10.0.0.1", "end": "10.0.0.2"}}, "ports": []any{map[string]any{"start": 80, "end": 443}}, "log": true},
			map[string]any{"protocol": 3, "networks": []any{map[string]any{"start": "0.0.0.0", "end": "255.255.255.255"}}, "icmps": map[string]any{"type": 8}},
		},
	}
	stdin["metadata"] = map[string]any{"container_workload": "app", "policy_group_id": "g"}
	cfg, err := LoadConfig(configtest.JSON(t, stdin))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RuntimeConfig.PortMappings[0] != (PortMapping{HostPort: 61000, ContainerPort: 8080}) {
		t.Errorf("port mappings: %+v", cfg.RuntimeConfig.PortMappings)
	}
	got := netOutRules(cfg.RuntimeConfig.NetOutRules)
	if got[0].Protocol != "tcp" || !got[0].Log || got[0].Networks[0].Start.String() != "10.0.0.1" || got[0].Ports[0].End != 443 {
		t.Errorf("tcp rule: %+v", got[0])
	}
	if got[1].Protocol != "icmp" || got[1].ICMP != nil {
		t.Errorf("icmp without code must carry no type/code: %+v", got[1])
	}
	if cfg.Metadata["container_workload"] != "app" {
		t.Errorf("metadata: %v", cfg.Metadata)
	}
}

func TestIPv6OverlayNetworkConfig(t *testing.T) {
	for _, tc := range []struct{ value, want, err string }{
		{"", "", ""},
		{"fd00:1::/96", "fd00:1::/96", ""},
		{"fd00:1::/64", "", `ipv6_overlay_network: invalid ipv6 overlay network "fd00:1::/64": must be a /96`},
	} {
		stdin := exampleStdin(t)
		stdin["ipv6_overlay_network"] = tc.value
		c, err := LoadConfig(configtest.JSON(t, stdin))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.value, err, tc.err)
			}
			continue
		}
		if err != nil || c.IPv6().String() != tc.want {
			t.Errorf("%q: IPv6() = %v, %v; want %q", tc.value, c, err, tc.want)
		}
	}
}
