package gardennet

import (
	"encoding/json"
	"fmt"
	"os"
)

// Config is adapter.json (BOSH job garden-cni). Keys and types as upstream:
// the unsigned port fields make a negative value a parse error, as there.
type Config struct {
	CniPluginDir               string   `json:"cni_plugin_dir"`
	CniConfigDir               string   `json:"cni_config_dir"`
	BindMountDir               string   `json:"bind_mount_dir"`
	StateFilePath              string   `json:"state_file"`
	StartPort                  uint32   `json:"start_port"`
	TotalPorts                 uint32   `json:"total_ports"`
	LogPrefix                  string   `json:"log_prefix"`
	SearchDomains              []string `json:"search_domains"`
	IPTablesLockFile           string   `json:"iptables_lock_file"`
	ProxyRedirectCIDR          string   `json:"proxy_redirect_cidr"`
	ProxyPort                  int      `json:"proxy_port"`
	ProxyUID                   *int     `json:"proxy_uid"`
	EnableIngressProxyRedirect bool     `json:"enable_ingress_proxy_redirect"`

	// CNICacheDir is a netman extension: where libcni keeps each ADD's
	// result for the matching DEL. Empty (upstream: no such key) means
	// libcni's default, /var/lib/cni.
	CNICacheDir string `json:"cni_cache_dir,omitempty"`
}

// LoadConfig reads and validates adapter.json. Messages are upstream's and
// the first problem wins (Garden shows one line).
func LoadConfig(path string) (*Config, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("file does not exist: %w", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	c := &Config{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("parsing config (%s): %w", path, err)
	}
	missing := func(key string) error { return fmt.Errorf("missing required config '%s'", key) }
	switch {
	case c.CniPluginDir == "":
		return c, missing("cni_plugin_dir")
	case c.CniConfigDir == "":
		return c, missing("cni_config_dir")
	case c.BindMountDir == "":
		return c, missing("bind_mount_dir")
	case c.StateFilePath == "":
		return c, missing("state_file")
	case c.StartPort == 0:
		return c, missing("start_port")
	case c.TotalPorts == 0:
		return c, missing("total_ports")
	case c.LogPrefix == "":
		return c, missing("log_prefix")
	case c.IPTablesLockFile == "":
		return c, missing("iptables_lock_file")
	case c.ProxyPort == 0:
		return c, missing("proxy_port")
	case c.ProxyUID == nil:
		return c, missing("proxy_uid")
	}
	return c, nil
}
