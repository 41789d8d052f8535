// Package appmetrics is vxlan-policy-agent's per-app network metrics: the
// counting rules it keeps in the cell's data plane for every app container
// (iptables.go, nft.go), and the Collector that reads their counters in one
// dump and exports them with the app, space and org GUIDs from the
// container metadata store, as Prometheus series on the debug server's
// /metrics and as dropsonde counter envelopes tagged with the app's
// source_id and instance_id (what `cf tail` and log-cache show per app).
//
// Every count is kept by the kernel: a container's bytes and packets in
// (to it) and out (from it) as the cell forwards them, and its new
// connections seen before the cell's filters (attempts) and after them
// (allowed); denied is the difference. docs/observability.md, "Per-app
// metrics", has the rules, the labels and the cardinality cap.
package appmetrics

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/netman-release/netman/src/metadata"
)

// Instance is one app container on the cell.
type Instance struct {
	Handle  string // the container handle (Diego's instance guid)
	IP      string
	AppID   string
	SpaceID string
	OrgID   string
	// Index is the instance index from log_config ("" when unknown).
	Index string
	// Tags are log_config's tags (app_name, space_name, ...), copied onto
	// the envelopes.
	Tags map[string]string
}

// InstanceID is what the envelopes carry as instance_id: the index, as
// loggregator's app metrics do, else the handle.
func (i Instance) InstanceID() string {
	if i.Index != "" {
		return i.Index
	}
	return i.Handle
}

// Counts are one container's kernel counters. Seen counts new connections
// before the cell's filters, Allowed after them.
type Counts struct {
	InBytes, InPackets, OutBytes, OutPackets uint64
	InSeen, InAllowed, OutSeen, OutAllowed   uint64
}

// DataPlane keeps the counting rules and reads their counters.
type DataPlane interface {
	// Sync makes the counting rules count exactly want (each with a
	// distinct IP). A container whose IP now belongs to another handle
	// starts again from zero.
	Sync(ctx context.Context, want []Instance) error
	// Read returns every counted container's counters by handle, from
	// one dump of the kernel whatever the number of containers.
	Read(ctx context.Context) (map[string]Counts, error)
}

// Instances turns the metadata store into the containers to count: those
// with an app GUID (metadata app_id, else policy_group_id), sorted by
// handle. space_id and org_id label them; log_config gives the index and
// the envelope tags.
func Instances(all map[string]metadata.Container) []Instance {
	out := make([]Instance, 0, len(all))
	for _, c := range all {
		app := str(c.Metadata, "app_id")
		if app == "" {
			app = str(c.Metadata, "policy_group_id")
		}
		if app == "" || c.IP == "" {
			continue
		}
		in := Instance{Handle: c.Handle, IP: c.IP, AppID: app, SpaceID: str(c.Metadata, "space_id"), OrgID: str(c.Metadata, "org_id")}
		if s := str(c.Metadata, "log_config"); s != "" {
			var lc struct {
				GUID  string            `json:"guid"`
				Index int               `json:"index"`
				Tags  map[string]string `json:"tags"`
			}
			// A log_config that does not decode only costs the index.
			if json.Unmarshal([]byte(s), &lc) == nil {
				in.Index = strconv.Itoa(lc.Index)
				in.Tags = lc.Tags
			}
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.Handle, b.Handle) })
	// Two entries with one IP (a stale entry): the first handle keeps it.
	seen := map[string]bool{}
	return slices.DeleteFunc(out, func(i Instance) bool {
		dup := seen[i.IP]
		seen[i.IP] = true
		return dup
	})
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}
