package iptableslogger

import (
	"context"
	"encoding/json"
	"time"

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
	byIP    map[string]entry
	// gone are containers removed from the store, by IP, with the time
	// they were noticed gone: conntrack destroys a connection only after
	// it timed out (TCP's TIME_WAIT is 120 s), often after its container
	// was deleted, and the flow record should still name the app.
	gone map[string]goneEntry
}

type goneEntry struct {
	entry
	at time.Time
}

// goneGrace is how long a removed container still names its flows: longer
// than conntrack's TIME_WAIT (120 s) and CLOSE_WAIT (60 s) timeouts.
const goneGrace = 5 * time.Minute

// entry is one container of the index: the ids packet events carry, and
// the names flow records add.
type entry struct {
	Container
	names Names
}

// Names are an app's, space's and org's names as the store has them: the
// tags of the container's log_config (kept current by
// silk-datastore-syncer); empty when it has none.
type Names struct {
	App, Space, Organization string
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
	byIP := make(map[string]entry, len(pool))
	for handle, e := range pool {
		// Two entries with one IP (a stale one) resolve to the smaller
		// handle, so the answer does not depend on map order.
		if old, ok := byIP[e.IP]; ok && old.ContainerID < handle {
			continue
		}
		byIP[e.IP] = entry{
			Container: Container{
				ContainerID:      handle,
				AppGUID:          metaString(e.Metadata, "app_id"),
				SpaceGUID:        metaString(e.Metadata, "space_id"),
				OrganizationGUID: metaString(e.Metadata, "org_id"),
			},
			names: logConfigNames(e.Metadata),
		}
	}
	now := time.Now()
	if c.gone == nil {
		c.gone = map[string]goneEntry{}
	}
	for ip, g := range c.gone {
		if _, back := byIP[ip]; back || now.Sub(g.at) > goneGrace {
			delete(c.gone, ip)
		}
	}
	for ip, e := range c.byIP {
		if _, ok := byIP[ip]; !ok {
			c.gone[ip] = goneEntry{entry: e, at: now}
		}
	}
	c.byIP, c.version, c.loaded = byIP, v, true
	return nil
}

// Lookup returns the container with that IP, or one with empty ids when
// there is none; the host's IP and id are always set, as upstream.
func (c *Containers) Lookup(ip string) Container {
	ct := c.byIP[ip].Container
	ct.HostIP, ct.HostGUID = c.hostIP, c.hostGUID
	return ct
}

// Local returns the endpoint of a flow at ip: the container and its names
// when ip is a container of this cell (ok), else only the address, since
// another cell's containers are not in this cell's store.
func (c *Containers) Local(ip string) (ep Endpoint, ok bool) {
	e, ok := c.byIP[ip]
	if !ok {
		g, gone := c.gone[ip]
		if !gone || time.Since(g.at) > goneGrace {
			return Endpoint{}, false
		}
		e = g.entry
	}
	return Endpoint{
		ContainerID: e.ContainerID, AppGUID: e.AppGUID, SpaceGUID: e.SpaceGUID,
		OrganizationGUID: e.OrganizationGUID, AppName: e.names.App, SpaceName: e.names.Space,
		OrganizationName: e.names.Organization, HostIP: c.hostIP, HostGUID: c.hostGUID,
	}, true
}

// logConfigNames reads the names from a container's log_config, a JSON
// string; anything unreadable gives empty names.
func logConfigNames(m map[string]any) Names {
	s := metaString(m, metadata.LogConfigKey)
	if s == "" {
		return Names{}
	}
	var lc metadata.LogConfig
	if json.Unmarshal([]byte(s), &lc) != nil {
		return Names{}
	}
	return Names{App: lc.Tags["app_name"], Space: lc.Tags["space_name"], Organization: lc.Tags["organization_name"]}
}

// metaString is a string metadata value; missing or non-string values are
// empty, as upstream.
func metaString(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}
