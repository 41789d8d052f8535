package agent

import (
	"encoding/json"
	"net/http"
	"net/netip"
	"sort"
	"time"

	"github.com/netman-release/netman/src/agent/c2c"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/observe"
)

// enforcedHandler is the debug server's /c2c-enforced: what the last good
// policy cycle enforced, per destination container, and when (`netman
// trace` asks it whether a policy has reached the cell).
func enforcedHandler(policies *policyCycle, backend string) http.Handler {
	return getJSON(func(r *http.Request) (any, error) {
		s := &policies.status
		s.Lock()
		in, stamp, good, attempt, lastErr := s.in, s.stamp, s.good, s.attempt, s.err
		s.Unlock()
		out := observe.Enforced{
			Backend: backend, Chain: policies.enforcer.Chain(), PoliciesLastUpdated: stamp,
			LastCycle: timeOrNil(good), LastAttempt: timeOrNil(attempt),
			PolicyDisabled:     policies.rules.planner.DisableNetworkPolicy,
			IPv6OverlayNetwork: policies.rules.planner.IPv6.String(),
			Sources:            []observe.MarkedSource{}, Destinations: []observe.Destination{},
		}
		if lastErr != nil {
			out.LastError = lastErr.Error()
		}
		e := c2c.PlannedEntries(in)
		for _, src := range e.Sources {
			out.Sources = append(out.Sources, observe.MarkedSource{IP: src.IP, AppGUID: src.AppID, Tag: src.Tag})
		}
		for _, d := range e.Destinations {
			if n := len(out.Destinations); n == 0 || out.Destinations[n-1].IP != d.IP {
				out.Destinations = append(out.Destinations, observe.Destination{IP: d.IP, AppGUID: d.AppID})
			}
			last := &out.Destinations[len(out.Destinations)-1]
			last.Rules = append(last.Rules, observe.AllowRule{
				SourceAppGUID: d.SourceID, SourceTag: d.SourceTag, Protocol: d.Protocol, StartPort: d.Start, EndPort: d.End,
			})
		}
		return out, nil
	})
}

// containersHandler is the debug server's /c2c-containers: the metadata
// store's containers as it is now, with their app's tag where the last
// enforced policies name the app.
func containersHandler(policies *policyCycle, store *metadata.Store, underlayIPs []string) http.Handler {
	return getJSON(func(r *http.Request) (any, error) {
		all, err := store.ReadAll(r.Context())
		if err != nil {
			return nil, err
		}
		s := &policies.status
		s.Lock()
		enforced := s.in.Policies
		s.Unlock()
		tags := map[string]string{}
		for _, p := range enforced {
			tags[p.Source.ID] = p.Source.Tag
			tags[p.Destination.ID] = p.Destination.Tag
		}
		out := observe.Containers{UnderlayIPs: underlayIPs, Containers: []observe.Container{}}
		if out.UnderlayIPs == nil {
			out.UnderlayIPs = []string{}
		}
		for _, m := range all {
			str := func(k string) string { v, _ := m.Metadata[k].(string); return v }
			c := observe.Container{
				Handle: m.Handle, IP: m.IP, AppGUID: str("policy_group_id"), SpaceGUID: str("space_id"), OrgGUID: str("org_id"),
				Ports: str("ports"), Workload: str("container_workload"),
			}
			c.Tag = tags[c.AppGUID]
			if n := policies.rules.planner.IPv6; n.Enabled() {
				if ip, err := netip.ParseAddr(m.IP); err == nil && ip.Unmap().Is4() {
					c.IPv6 = n.Addr(ip).String()
				}
			}
			var lc metadata.LogConfig
			if raw := str(metadata.LogConfigKey); raw != "" && json.Unmarshal([]byte(raw), &lc) == nil {
				c.AppName = lc.Tags["app_name"]
			}
			out.Containers = append(out.Containers, c)
		}
		sort.Slice(out.Containers, func(i, j int) bool { return out.Containers[i].Handle < out.Containers[j].Handle })
		return out, nil
	})
}

// getJSON serves GET (and HEAD) with get's value as JSON.
func getJSON(get func(r *http.Request) (any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET")
			http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
			return
		}
		v, err := get(r)
		observe.WriteJSON(w, v, err, http.StatusInternalServerError)
	})
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
