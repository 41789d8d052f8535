package appmetrics

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/netman-release/netman/src/metrics"
)

// Prometheus families, and the dropsonde counter names (the family
// without _total).
const (
	FamilyBytes       = "netman_app_network_bytes_total"
	FamilyPackets     = "netman_app_network_packets_total"
	FamilyConnections = "netman_app_network_connections_total"
	// FamilySeries is the number of app series the last collection
	// exported; FamilyDropped counts the series left out by the cap, each
	// collection adding what it left out.
	FamilySeries  = "netman_app_metrics_series"
	FamilyDropped = "netman_app_metrics_dropped_series_total"
)

// SeriesPerInstance is how many series one container has: bytes and
// packets in and out, connections allowed and denied in and out.
const SeriesPerInstance = 8

// DefaultMaxSeries is the cap when none is configured: 500 containers, twice
// Garden's default of 250 containers a cell.
const DefaultMaxSeries = 4000

// Series is one exported value.
type Series struct {
	Family    string
	Direction string // "in" or "out"
	Verdict   string // connections only: "allowed" or "denied"
	Instance  *Instance
	Value     uint64
}

// Collector keeps the counting rules of the cell's app containers and
// turns their counters into series.
type Collector struct {
	dp  DataPlane
	max int

	mu        sync.Mutex
	instances []Instance
	synced    bool
	// denied keeps each denied count monotonic: seen and allowed are read
	// a moment apart, so their difference may briefly run ahead.
	denied  map[string]uint64
	dropped uint64
	series  int
	// emitted is each envelope counter's last total, for its delta.
	emitted map[string]uint64
}

// NewCollector returns a Collector on dp exporting at most maxSeries series
// (0: DefaultMaxSeries).
func NewCollector(dp DataPlane, maxSeries int) *Collector {
	if maxSeries <= 0 {
		maxSeries = DefaultMaxSeries
	}
	return &Collector{dp: dp, max: maxSeries, denied: map[string]uint64{}, emitted: map[string]uint64{}}
}

// Sync makes the data plane count want (from Instances); it writes only
// when the containers changed since the last successful Sync.
func (c *Collector) Sync(ctx context.Context, want []Instance) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.synced && slices.EqualFunc(c.instances, want, sameInstance) {
		return nil
	}
	if err := c.dp.Sync(ctx, want); err != nil {
		c.synced = false
		return err
	}
	c.instances, c.synced = want, true
	return nil
}

func sameInstance(a, b Instance) bool {
	return a.Handle == b.Handle && a.IP == b.IP && a.AppID == b.AppID && a.SpaceID == b.SpaceID &&
		a.OrgID == b.OrgID && a.Index == b.Index
}

// Collect reads the counters once and returns the series of the synced
// containers in handle order, at most the cap: the containers past it are
// left out whole, and counted in FamilyDropped.
func (c *Collector) Collect(ctx context.Context) ([]Series, error) {
	counts, err := c.dp.Read(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	keep := len(c.instances)
	if n := c.max / SeriesPerInstance; keep > n {
		keep = n
	}
	c.dropped += uint64((len(c.instances) - keep) * SeriesPerInstance)
	out := make([]Series, 0, keep*SeriesPerInstance)
	live := make(map[string]bool, keep*2)
	for i := range c.instances[:keep] {
		in := &c.instances[i]
		n := counts[in.Handle]
		deny := func(dir string, seen, allowed uint64) uint64 {
			k := in.Handle + "/" + dir
			live[k] = true
			d := c.denied[k]
			if seen > allowed && seen-allowed > d {
				d = seen - allowed
			}
			c.denied[k] = d
			return d
		}
		out = append(out,
			Series{Family: FamilyBytes, Direction: "in", Instance: in, Value: n.InBytes},
			Series{Family: FamilyBytes, Direction: "out", Instance: in, Value: n.OutBytes},
			Series{Family: FamilyPackets, Direction: "in", Instance: in, Value: n.InPackets},
			Series{Family: FamilyPackets, Direction: "out", Instance: in, Value: n.OutPackets},
			Series{Family: FamilyConnections, Direction: "in", Verdict: "allowed", Instance: in, Value: n.InAllowed},
			Series{Family: FamilyConnections, Direction: "in", Verdict: "denied", Instance: in, Value: deny("in", n.InSeen, n.InAllowed)},
			Series{Family: FamilyConnections, Direction: "out", Verdict: "allowed", Instance: in, Value: n.OutAllowed},
			Series{Family: FamilyConnections, Direction: "out", Verdict: "denied", Instance: in, Value: deny("out", n.OutSeen, n.OutAllowed)},
		)
	}
	for k := range c.denied {
		if !live[k] {
			delete(c.denied, k)
		}
	}
	c.series = len(out)
	return out, nil
}

var help = map[string]string{
	FamilyBytes:       "Bytes the cell forwarded to (in) and from (out) each app container, counted by the data plane.",
	FamilyPackets:     "Packets the cell forwarded to (in) and from (out) each app container, counted by the data plane.",
	FamilyConnections: "New connections to (in) and from (out) each app container, allowed or denied by the cell's filters.",
	FamilySeries:      "App network series exported by the last collection.",
	FamilyDropped:     "App network series left out by app_metrics_max_series, summed over collections.",
}

// WritePrometheus collects and writes the series in the Prometheus text
// format, with the cap's two series.
func (c *Collector) WritePrometheus(ctx context.Context, w io.Writer) error {
	series, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	dropped := c.dropped
	c.mu.Unlock()
	var b bytes.Buffer
	// Collect returns each container's series together; the format wants
	// each family's samples together, under one header.
	for _, family := range []string{FamilyBytes, FamilyPackets, FamilyConnections} {
		if len(series) > 0 {
			header(&b, family, "counter")
		}
		for _, s := range series {
			if s.Family == family {
				writeSample(&b, s)
			}
		}
	}
	header(&b, FamilySeries, "gauge")
	b.WriteString(FamilySeries + " " + strconv.Itoa(len(series)) + "\n")
	header(&b, FamilyDropped, "counter")
	b.WriteString(FamilyDropped + " " + strconv.FormatUint(dropped, 10) + "\n")
	_, err = w.Write(b.Bytes())
	return err
}

func writeSample(b *bytes.Buffer, s Series) {
	b.WriteString(s.Family)
	b.WriteString(`{app_guid="`)
	b.WriteString(escapeLabel(s.Instance.AppID))
	b.WriteString(`",space_guid="`)
	b.WriteString(escapeLabel(s.Instance.SpaceID))
	b.WriteString(`",org_guid="`)
	b.WriteString(escapeLabel(s.Instance.OrgID))
	b.WriteString(`",instance_id="`)
	b.WriteString(escapeLabel(s.Instance.Index))
	b.WriteString(`",container_handle="`)
	b.WriteString(escapeLabel(s.Instance.Handle))
	b.WriteString(`",direction="`)
	b.WriteString(s.Direction)
	if s.Verdict != "" {
		b.WriteString(`",verdict="`)
		b.WriteString(s.Verdict)
	}
	b.WriteString(`"} `)
	b.WriteString(strconv.FormatUint(s.Value, 10))
	b.WriteByte('\n')
}

func header(b *bytes.Buffer, family, kind string) {
	b.WriteString("# HELP " + family + " " + help[family] + "\n")
	b.WriteString("# TYPE " + family + " " + kind + "\n")
}

var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// CounterSender is the part of metrics.Sender Emit uses.
type CounterSender interface {
	SendTaggedCounter(name string, delta, total uint64, tags map[string]string)
}

var _ CounterSender = (*metrics.Sender)(nil)

// Emit collects and sends each series as a dropsonde counter event: the
// family without _total as its name, the kernel's count as its total and
// the change since the last Emit as its delta, tagged source_id (the app
// GUID) and instance_id (InstanceID) as loggregator's app metrics are, plus
// direction, verdict, the space and org GUIDs and log_config's tags.
func (c *Collector) Emit(ctx context.Context, s CounterSender) error {
	series, err := c.Collect(ctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	live := make(map[string]bool, len(series))
	for _, x := range series {
		in := x.Instance
		tags := make(map[string]string, len(in.Tags)+6)
		for k, v := range in.Tags {
			tags[k] = v
		}
		tags["source_id"] = in.AppID
		tags["instance_id"] = in.InstanceID()
		tags["space_id"] = in.SpaceID
		tags["organization_id"] = in.OrgID
		tags["direction"] = x.Direction
		if x.Verdict != "" {
			tags["verdict"] = x.Verdict
		}
		name := strings.TrimSuffix(x.Family, "_total")
		key := in.Handle + "/" + name + "/" + x.Direction + "/" + x.Verdict
		live[key] = true
		delta := x.Value
		if last, ok := c.emitted[key]; ok && x.Value >= last {
			delta = x.Value - last
		}
		c.emitted[key] = x.Value
		s.SendTaggedCounter(name, delta, x.Value, tags)
	}
	for k := range c.emitted {
		if !live[k] {
			delete(c.emitted, k)
		}
	}
	return nil
}
