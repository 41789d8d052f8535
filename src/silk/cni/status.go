package cni

import (
	"context"
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
)

// Status (CNI 1.1) reports whether an ADD could succeed now: silk-daemon
// (or the subnet file) answers with a usable lease, and the lease still has
// a free address. Failures are code 50, "plugin not available".
func (p *Plugin) Status(ctx context.Context, args *skel.CmdArgs) error {
	conf, err := parseNetConfFor(args.StdinData, "STATUS", "1.1.0")
	if err != nil {
		return err
	}
	info, err := p.discover(ctx, conf)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "discover network info", err.Error())
	}
	free, err := newIPAM(conf).usage(info.OverlaySubnet)
	if err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "run ipam plugin", err.Error())
	}
	if free <= 0 {
		return types.NewError(types.ErrPluginNotAvailable, "run ipam plugin",
			fmt.Sprintf("no IP addresses available in %s", info.OverlaySubnet))
	}
	return nil
}
