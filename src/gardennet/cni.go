package gardennet

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

// IfName is the container-side interface every plugin is asked for.
const IfName = "eth0"

// LoadNetworkConfig finds the chain to run in dir, read fresh on every
// invocation as upstream: the first .conflist in lexical walk order, else
// the first .conf as a one-plugin list, else nil (up then fails with "no
// ip allocated"). When several files are present it warns on warn that only
// one runs.
func LoadNetworkConfig(dir string, warn io.Writer) (*libcni.NetworkConfigList, error) {
	var confs, lists []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
		case strings.HasSuffix(path, ".conf"):
			confs = append(confs, path)
		case strings.HasSuffix(path, ".conflist"):
			lists = append(lists, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("error loading config: %w", err)
	}
	var list *libcni.NetworkConfigList
	switch {
	case len(lists) > 0:
		list, err = libcni.NetworkConfFromFile(lists[0])
		if err != nil {
			return nil, fmt.Errorf("unable to load config from %s: %w", lists[0], err)
		}
	case len(confs) > 0:
		list, err = confListFromConf(confs[0])
		if err != nil {
			return nil, err
		}
	}
	if len(lists)+len(confs) > 1 {
		fmt.Fprintf(warn, "%s - Only one CNI config file or conflist (chain) will be executed. "+
			"If a conf and conflist file are both present, then the conflist will be executed. "+
			"If multiple CNI config files are present, behavior is undefined.\n", time.Now().Format(time.RFC3339))
	}
	return list, nil
}

// confListFromConf loads a single-plugin .conf file as a one-plugin list
// (libcni's deprecated ConfListFromConf "upconvert").
func confListFromConf(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("unable to load config from %s: error reading %s: %w", path, path, err)
	}
	conf, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("unable to load config from %s: %w", path, err)
	}
	var raw map[string]any
	_ = json.Unmarshal(data, &raw) // parsed above
	b, err := json.Marshal(map[string]any{"name": conf.Network.Name, "cniVersion": conf.Network.CNIVersion, "plugins": []any{raw}})
	if err == nil {
		var list *libcni.NetworkConfigList
		if list, err = libcni.NetworkConfFromBytes(b); err == nil {
			return list, nil
		}
	}
	return nil, fmt.Errorf("unable to upconvert from conf to conf list %s: %w", path, err)
}

// cniLibrary is the part of libcni the controller uses.
type cniLibrary interface {
	AddNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (types.Result, error)
	DelNetworkList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error
}

// NewCNILibrary is libcni searching pluginDir (CNI_PATH) for plugins and
// caching results in cacheDir ("" = libcni's /var/lib/cni).
func NewCNILibrary(pluginDir, cacheDir string) *libcni.CNIConfig {
	return NewCNILibraryWithExec(pluginDir, cacheDir, nil)
}

// NewCNILibraryWithExec is NewCNILibrary running plugins through exec
// (nil: as child processes, their stderr going to ours).
func NewCNILibraryWithExec(pluginDir, cacheDir string, exec invoke.Exec) *libcni.CNIConfig {
	return libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, cacheDir, exec)
}

// CNI runs the chain through libcni.
type CNI struct {
	Lib  cniLibrary
	List *libcni.NetworkConfigList // nil: no config files
}

func runtimeConf(nsPath, handle string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: handle, NetNS: nsPath, IfName: IfName}
}

// Up runs ADD with "metadata" (when not empty) and "runtimeConfig" set as
// top-level keys of every plugin's config, replacing what the file had.
func (c *CNI) Up(ctx context.Context, nsPath, handle string, metadata, runtimeConfig map[string]any) (types.Result, error) {
	if c.List == nil {
		return nil, nil
	}
	extra := map[string]any{}
	if len(metadata) > 0 {
		extra["metadata"] = metadata
	}
	if len(runtimeConfig) > 0 {
		extra["runtimeConfig"] = runtimeConfig
	}
	list := *c.List
	list.Plugins = make([]*libcni.PluginConfig, len(c.List.Plugins))
	for i, p := range c.List.Plugins {
		injected, err := libcni.InjectConf(p, extra)
		if err != nil {
			return nil, fmt.Errorf("adding extra data to CNI config: %w", err)
		}
		list.Plugins[i] = injected
	}
	result, err := c.Lib.AddNetworkList(ctx, &list, runtimeConf(nsPath, handle))
	if err != nil {
		return nil, fmt.Errorf("add network list failed: %w", err)
	}
	return result, nil
}

// Down runs DEL with the configs as they are on disk; libcni passes the
// cached ADD result as prevResult.
func (c *CNI) Down(ctx context.Context, nsPath, handle string) error {
	if c.List == nil {
		return nil
	}
	if err := c.Lib.DelNetworkList(ctx, c.List, runtimeConf(nsPath, handle)); err != nil {
		return fmt.Errorf("del network failed: %w", err)
	}
	return nil
}
