// Command cni-wrapper-plugin is the top plugin of garden's CNI conflist: it
// delegates to silk-cni, records the container in the metadata store, and
// installs the container's iptables rules. See docs/cni-wrapper-plugin.md.
package main

import (
	"context"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/netman-release/netman/src/cniwrapper"
)

func main() {
	p := cniwrapper.NewPlugin()
	ctx := context.Background()
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			result, err := p.Add(ctx, args)
			if err != nil {
				return err
			}
			return types.PrintResult(result, result.Version())
		},
		Del:   func(args *skel.CmdArgs) error { return p.Del(ctx, args) },
		Check: func(args *skel.CmdArgs) error { return p.Check(ctx, args) },
	}, version.All, "CNI Plugin cni-wrapper-plugin (netman)")
}
