package cni

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/netman-release/netman/src/configfile"
)

// SupportedVersions are the CNI spec versions silk-cni speaks. Upstream
// accepts only 1.0.0; the older ones cost nothing (results convert) and
// 1.1.0 adds STATUS and GC.
var SupportedVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// VersionInfo is what `CNI_COMMAND=VERSION` reports.
func VersionInfo() version.PluginInfo { return version.PluginSupports(SupportedVersions...) }

// NetConf is silk-cni's network configuration (the wrapper's `delegate`),
// keys exactly as upstream's.
type NetConf struct {
	types.PluginConf
	// DataDir is host-local's state root: reservations live in
	// <dataDir>/ipam/<name>.
	DataDir string `json:"dataDir"`
	// Datastore is silk-cni's own container store, read by silk-daemon.
	Datastore string `json:"datastore"`
	// DaemonPort is silk-daemon's network-info port on 127.0.0.1.
	DaemonPort int `json:"daemonPort"`
	// MTU, when not 0, overrides the MTU silk-daemon reports.
	MTU int `json:"mtu"`
	// SubnetFile, when set, is a flannel subnet.env read instead of asking
	// the daemon (FLANNEL_SUBNET and FLANNEL_MTU).
	SubnetFile string `json:"subnetFile"`
}

// MarshalJSON writes every key. Without it, types.PluginConf's own
// MarshalJSON, promoted to *NetConf through the embedding, would write only
// the plugin keys (cniVersion, name, type, ...) and drop silk-cni's.
func (c NetConf) MarshalJSON() ([]byte, error) {
	type plain NetConf // the same fields, without this method
	return json.Marshal(plain(c))
}

// ParseNetConf decodes stdin. It checks only what every command needs (the
// JSON, a supported cniVersion); Validate adds what ADD needs.
func ParseNetConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "invalid network config", fmt.Sprintf("decoding stdin: %v", err))
	}
	if conf.CNIVersion == "" {
		// The CNI library reads a missing cniVersion as 0.1.0.
		conf.CNIVersion = "0.1.0"
	}
	if !slices.Contains(SupportedVersions, conf.CNIVersion) {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion, "incompatible CNI versions",
			fmt.Sprintf("config is %q, plugin supports %s", conf.CNIVersion, strings.Join(SupportedVersions, ", ")))
	}
	return conf, nil
}

// parseNetConfFor is ParseNetConf and Validate for a command (CHECK, GC,
// STATUS) that a config must be at least version minVersion to allow.
func parseNetConfFor(stdin []byte, command, minVersion string) (*NetConf, error) {
	conf, err := ParseNetConf(stdin)
	if err != nil {
		return nil, err
	}
	if ok, _ := version.GreaterThanOrEqualTo(conf.CNIVersion, minVersion); !ok {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion, "config version does not allow "+command, "")
	}
	return conf, conf.Validate()
}

// Validate names every problem that would stop an ADD, before anything is
// allocated or created.
func (c *NetConf) Validate() error {
	var p configfile.Problems
	p.RequiredString("name", c.Name)
	p.RequiredString("dataDir", c.DataDir)
	p.RequiredString("datastore", c.Datastore)
	if c.MTU < 0 {
		p.Addf("mtu: must be at least 0 (got %d)", c.MTU)
	} else if c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535) {
		p.Addf("mtu: must be 0 (use silk-daemon's) or between 68 and 65535 (got %d)", c.MTU)
	}
	if c.SubnetFile == "" {
		p.Port("daemonPort", c.DaemonPort)
	}
	if list := p.List(); len(list) > 0 {
		return types.NewError(types.ErrInvalidNetworkConfig, "invalid network config", strings.Join(list, "; "))
	}
	return nil
}

// IPAMDir is where host-local keeps this network's reservations.
func (c *NetConf) IPAMDir() string { return c.DataDir + "/ipam/" + c.Name }
