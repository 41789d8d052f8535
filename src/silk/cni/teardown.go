package cni

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"code.cloudfoundry.org/lager/v3"
	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/netlinkx"
)

// TeardownConfig is cni-teardown's config file (teardown-config.json).
type TeardownConfig struct {
	PathsToDelete []string `json:"paths_to_delete"`
}

// LoadTeardownConfig reads cni-teardown's JSON config.
func LoadTeardownConfig(path string) (*TeardownConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("loading config: %w", err)
	}
	cfg := &TeardownConfig{}
	if err := json.Unmarshal(data, cfg); err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return cfg, nil
}

// RemoveLegacyIFBs deletes, in the calling thread's namespace, every ifb
// link whose name starts with "i": the per-container IFBs (i-AAABBBCCCDDD)
// of silk's old built-in bandwidth limiter. The stock bandwidth plugin's
// bwp… devices are left alone. Failures are logged, not returned: the job
// must start anyway.
func RemoveLegacyIFBs(logger lager.Logger) {
	links, err := netlinkx.LinkList(netlinkx.Host)
	if err != nil {
		logger.Error("failed-to-list-network-devices", err)
	}
	for _, link := range links {
		if link.Type() == "ifb" && strings.HasPrefix(link.Attrs().Name, "i") {
			if err := netlink.LinkDel(link); err != nil {
				logger.Error("failed-to-remove-ifb", err, lager.Data{"name": link.Attrs().Name})
			}
		}
	}
}

// RemovePaths deletes each path recursively (silk-cni's pre-start wipes
// the container metadata, host-local and silk stores: after a restart no
// container survives, so neither may their reservations).
func RemovePaths(logger lager.Logger, paths []string) {
	for _, p := range paths {
		if err := os.RemoveAll(p); err != nil {
			logger.Info("failed-to-remove-path", lager.Data{"path": p, "err": err.Error()})
		}
	}
}
