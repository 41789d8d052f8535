package daemon

import (
	"fmt"
	"runtime"
	"sort"

	"code.cloudfoundry.org/lager/v3"
	"github.com/safchain/ethtool"
	"github.com/vishvananda/netns"
)

// VTEPOffloads are the VTEP's offload features silk-daemon sets explicitly
// (ethtool -K names), at creation and whenever a poll finds them changed,
// unless vtep_checksum_offload asks for the kernel's default (on).
//
// tx-checksum-ip-generic off: with it on (the kernel's default for a VXLAN
// device) the inner TCP/UDP checksum is left to be completed later, which
// kernels have repeatedly got wrong once the packet is also NATed (calico
// #3145, #4865: bad UDP checksums, 63 s connection stalls) and which on 6.12+
// kernels limits a single VXLAN device to 50–300 Mbit/s (calico #11435).
// Calico, flannel's troubleshooting guide and kubespray all turn it off; see
// docs/silk-daemon.md for the evidence and the measurements.
var VTEPOffloads = map[string]bool{
	"tx-checksum-ip-generic": false,
}

// vtepOffloads is the set for cfg.
func vtepOffloads(cfg Config) map[string]bool {
	if cfg.VTEPChecksumOffload {
		return map[string]bool{"tx-checksum-ip-generic": true}
	}
	return VTEPOffloads
}

// Features reads and changes a device's ethtool features (*ethtool.Ethtool
// satisfies it).
type Features interface {
	Features(intf string) (map[string]bool, error)
	Change(intf string, config map[string]bool) error
}

// SetOffloads makes the named device's features in want match, changing only
// those that differ; it returns the names it changed, sorted. A feature the
// device does not have is an error.
func SetOffloads(f Features, name string, want map[string]bool) ([]string, error) {
	have, err := f.Features(name)
	if err != nil {
		return nil, fmt.Errorf("read offloads of %s: %w", name, err)
	}
	change := map[string]bool{}
	var names []string
	for k, v := range want {
		cur, ok := have[k]
		if !ok {
			return nil, fmt.Errorf("read offloads of %s: no feature %q", name, k)
		}
		if cur != v {
			change[k] = v
			names = append(names, k)
		}
	}
	if len(change) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	if err := f.Change(name, change); err != nil {
		return nil, fmt.Errorf("set offloads of %s %v: %w", name, change, err)
	}
	return names, nil
}

// openEthtool opens an ethtool socket in the namespace at nsPath ("" is the
// process's own); the ioctls act in the namespace the socket was made in.
func openEthtool(nsPath string) (*ethtool.Ethtool, error) {
	if nsPath == "" {
		return ethtool.NewEthtool()
	}
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter netns %s: %w", nsPath, err)
	}
	e, eerr := ethtool.NewEthtool()
	if err := netns.Set(orig); err != nil {
		if e != nil {
			e.Close()
		}
		// The thread stays locked (and so never serves another
		// goroutine) in the wrong namespace; the caller fails.
		return nil, fmt.Errorf("leave netns %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return e, eerr
}

// offloadCheck puts the VTEP's offloads back when something changed them
// (three ioctls a poll; a write only on drift).
type offloadCheck struct {
	logger lager.Logger
	links  Features
	name   string
	want   map[string]bool
}

func (o *offloadCheck) check() error {
	if o == nil {
		return nil
	}
	changed, err := SetOffloads(o.links, o.name, o.want)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		o.logger.Info("vtep-offloads-set", lager.Data{"vtep": o.name, "features": changed})
	}
	return nil
}
