package cni

import (
	"context"
	"errors"
	"fmt"
	"net"

	"code.cloudfoundry.org/lager/v3"
	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/plugins/plugins/ipam/host-local/backend/disk"
)

// GC (CNI 1.1) removes what silk-cni holds for attachments the runtime no
// longer knows: reservations whose (container ID, ifname) is not in
// cni.dev/valid-attachments, the host veths of those addresses if any
// survived, and store entries whose address is no longer reserved by a
// valid attachment. It runs under host-local's lock, so no ADD can reserve
// an address between the listing and the store cleanup. Errors do not stop
// it; they are all reported at the end.
func (p *Plugin) GC(ctx context.Context, args *skel.CmdArgs) (err error) {
	logger := p.logger().Session("plugin-gc")
	defer logFailure(logger, "gc", &err)

	conf, err := parseNetConfFor(args.StdinData, "GC", "1.1.0")
	if err != nil {
		return err
	}
	valid := map[[2]string]bool{}
	validID := map[string]bool{}
	for _, a := range conf.ValidAttachments {
		valid[[2]string{a.ContainerID, a.IfName}] = true
		validID[a.ContainerID] = true
	}
	hostNS, closeHost, err := p.hostNS()
	if err != nil {
		return stepError("gc failed", err)
	}
	defer closeHost()

	pool := newIPAM(conf)
	var errs []error
	var released []string
	lockErr := pool.locked(func(*disk.Store) error {
		all, err := pool.list()
		if err != nil {
			return err
		}
		var kept []net.IP
		for _, a := range all {
			ok := valid[[2]string{a.ContainerID, a.IfName}] || (a.IfName == "" && validID[a.ContainerID])
			if ok {
				kept = append(kept, a.IP)
				continue
			}
			if dev := HostDeviceName(a.IP); dev != "" {
				if _, err := deleteLink(hostNS, dev); err != nil {
					errs = append(errs, err)
					kept = append(kept, a.IP) // the device still claims it
					continue
				}
			}
			if err := pool.removeFile(a.IP); err != nil {
				errs = append(errs, err)
				kept = append(kept, a.IP)
				continue
			}
			released = append(released, a.IP.String())
		}
		removed, err := Store{Path: conf.Datastore}.DeleteIf(func(c Container) bool {
			return !containsIP(kept, net.ParseIP(c.IP))
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("datastore: %w", err))
		}
		if len(removed) > 0 {
			logger.Info("removed-store-entries", lager.Data{"entries": removed})
		}
		return nil
	})
	if lockErr != nil {
		errs = append(errs, lockErr)
	}
	logger.Info("collected", lager.Data{"released": released})
	if len(errs) > 0 {
		return stepError("gc failed", errors.Join(errs...))
	}
	return nil
}
