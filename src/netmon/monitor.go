package netmon

import (
	"context"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/metrics"
)

// Metric names, as upstream; every one is a value metric with unit Unit.
const (
	MetricNetInterfaceCount = "NetInterfaceCount"
	MetricIPTablesRuleCount = "IPTablesRuleCount"
	MetricOverlayTxBytes    = "OverlayTxBytes"
	MetricOverlayRxBytes    = "OverlayRxBytes"
	MetricOverlayRxDropped  = "OverlayRxDropped"
	MetricOverlayTxDropped  = "OverlayTxDropped"

	// netman's, sent only with enforcement_backend: nftables (NFTCounts).
	MetricNFTablesRuleCount       = "NFTablesRuleCount"
	MetricNFTablesSetElementCount = "NFTablesSetElementCount"

	// Unit is what upstream's runtimeschema metric.Metric sends.
	Unit = "Metric"
)

// overlayStats are the interface counters reported, in upstream's order,
// with the sysfs file and the message logged when it cannot be read.
var overlayStats = []struct{ metric, file, failure string }{
	{MetricOverlayTxBytes, "tx_bytes", "read-tx-bytes"},
	{MetricOverlayRxBytes, "rx_bytes", "read-rx-bytes"},
	{MetricOverlayRxDropped, "rx_dropped", "read-rx-dropped"},
	{MetricOverlayTxDropped, "tx_dropped", "read-tx-dropped"},
}

// Monitor takes one round of measurements (upstream's SystemMetrics).
type Monitor struct {
	Logger lager.Logger
	Sender *metrics.Sender
	Rules  RuleCounter
	// NFT, when not nil (enforcement_backend: nftables), counts netman's
	// nftables table.
	NFT NFTCounter
	// Interfaces counts network interfaces; nil means CountInterfaces.
	Interfaces func() (int, error)
	Stats      Stats
	// Aggregate, when not nil, receives every rule count for telemetry.
	Aggregate *Aggregator
}

// Measure sends NetInterfaceCount, IPTablesRuleCount, with NFT
// NFTablesRuleCount and NFTablesSetElementCount, and the four overlay
// counters, in that order, stopping at the first failure. Failures are
// logged with upstream's messages (e.g. "read-tx-bytes" while the VTEP does
// not exist yet) and are never fatal.
func (m *Monitor) Measure(ctx context.Context) {
	logger := m.Logger.Session("measure")
	logger.Debug("measure-start")
	defer logger.Debug("measure-complete")
	if failure, err := m.measure(ctx, logger); err != nil && ctx.Err() == nil {
		logger.Error(failure, err)
	}
}

// measure returns the message to log with the first failure.
func (m *Monitor) measure(ctx context.Context, logger lager.Logger) (string, error) {
	send := func(name string, v float64) {
		m.Sender.SendValue(name, v, Unit)
		logger.Debug("metric-sent", lager.Data{name: v})
	}

	countIfs := m.Interfaces
	if countIfs == nil {
		countIfs = CountInterfaces
	}
	nIfs, err := countIfs()
	if err != nil {
		return "count-network-interfaces", err
	}
	send(MetricNetInterfaceCount, float64(nIfs))

	nRules, err := m.Rules.CountRules(ctx)
	if err != nil {
		return "count-iptables-rules", err
	}
	if m.Aggregate != nil {
		m.Aggregate.Add(nRules)
	}
	send(MetricIPTablesRuleCount, float64(nRules))

	if m.NFT != nil {
		c, err := m.NFT.CountNFT(ctx)
		if err != nil {
			return "count-nftables-rules", err
		}
		send(MetricNFTablesRuleCount, float64(c.Rules))
		send(MetricNFTablesSetElementCount, float64(c.Elements))
	}

	for _, s := range overlayStats {
		v, err := m.Stats.Read(s.file)
		if err != nil {
			return s.failure, err
		}
		send(s.metric, float64(v))
	}
	return "", nil
}

// TelemetrySource is the telemetry-source of every telemetry line.
const TelemetrySource = "netmon"

// Telemetry writes upstream's "count-iptables-rules" telemetry line
// (upstream's TelemetryMetrics).
type Telemetry struct {
	// Logger is the process logger, for failures.
	Logger lager.Logger
	// Out writes the telemetry lines (a logger named "netmon" on the
	// telemetry log file).
	Out   lager.Logger
	Rules RuleCounter
	// Aggregate holds the metric poller's rule counts since the last line.
	Aggregate *Aggregator
	// Interval is reported as IPTablesRuleCountInterval, in seconds.
	Interval time.Duration
	// Now stamps telemetry-time; nil means time.Now.
	Now func() time.Time
}

// Report counts the rules now and writes one line with that count and the
// maximum, average and minimum of the counts the metric poller took since
// the last line, then starts a new aggregation period. When counting fails
// nothing is written and the period goes on.
func (t *Telemetry) Report(ctx context.Context) {
	n, err := t.Rules.CountRules(ctx)
	if err != nil {
		if ctx.Err() == nil {
			t.Logger.Error("failed-fetching-network-stats", err)
		}
		return
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	s := t.Aggregate.Flush()
	t.Out.Info("count-iptables-rules", lager.Data{
		"telemetry-source":          TelemetrySource,
		"telemetry-time":            now(),
		"IPTablesRuleCount":         n,
		"IPTablesRuleCountInterval": t.Interval.Seconds(),
		"IPTablesRuleMaxiumum":      s.Maximum, // sic: upstream's key
		"IPTablesRuleAverage":       s.Average,
		"IPTablesRuleMinimum":       s.Minimum,
	})
}
