package iptableslogger

import (
	"context"

	"github.com/netman-release/netman/src/metadata"
)

// Containers finds the app behind a container IP in the container metadata
// store (written by cni-wrapper-plugin), keeping an index by IP that it
// rebuilds only when the store's version changes.
type Containers struct {
	store    *metadata.Store
	hostIP   string
	hostGUID string

	loaded  bool
	version int
	byIP    map[string]Container
}

// NewContainers returns a lookup over store for a cell with the given IP and
// BOSH instance id, which every Container it returns carries.
func NewContainers(store *metadata.Store, hostIP, hostGUID string) *Containers {
	return &Containers{store: store, hostIP: hostIP, hostGUID: hostGUID}
}

// Refresh re-reads the store when its version file changed since the last
// successful read. On error the previous index stays in use.
func (c *Containers) Refresh(ctx context.Context) error {
	v, err := c.store.Version()
	if err != nil {
		return err
	}
	if c.loaded && v == c.version {
		return nil
	}
	// ReadAll may return a newer version than v; the next Refresh then sees
	// a changed version and rebuilds once more, which is harmless.
	pool, err := c.store.ReadAll(ctx)
	if err != nil {
		return err
	}
	byIP := make(map[string]Container, len(pool))
	for handle, e := range pool {
		// Two entries with one IP (a stale one) resolve to the smaller
		// handle, so the answer does not depend on map order.
		if old, ok := byIP[e.IP]; ok && old.ContainerID < handle {
			continue
		}
		byIP[e.IP] = Container{
			ContainerID:      handle,
			AppGUID:          metaString(e.Metadata, "app_id"),
			SpaceGUID:        metaString(e.Metadata, "space_id"),
			OrganizationGUID: metaString(e.Metadata, "org_id"),
		}
	}
	c.byIP, c.version, c.loaded = byIP, v, true
	return nil
}

// Lookup returns the container with that IP, or one with empty ids when
// there is none; the host's IP and id are always set, as upstream.
func (c *Containers) Lookup(ip string) Container {
	ct := c.byIP[ip]
	ct.HostIP, ct.HostGUID = c.hostIP, c.hostGUID
	return ct
}

// metaString is a string metadata value; missing or non-string values are
// empty, as upstream.
func metaString(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
