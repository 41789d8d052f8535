package daemon

import (
	"context"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/lease"
)

// LeaseClient is the part of the silk-controller client a poll uses.
type LeaseClient interface {
	Renew(ctx context.Context, l lease.Lease) error
	RoutableLeases(ctx context.Context) ([]lease.Lease, error)
}

// Metric names, upstream's.
const (
	metricRenewSuccess    = "renewSuccess"
	metricRenewFailure    = "renewFailure"
	metricConvergeSuccess = "convergeSuccess"
	metricConvergeFailure = "convergeFailure"
	metricNumberLeases    = "numberLeases"
)

// Cycle is one poll: renew the lease, fetch every routable lease, converge.
type Cycle struct {
	Logger    lager.Logger
	Client    LeaseClient
	Converger *Converger
	Lease     lease.Lease
	Sender    *metrics.Sender
	// Tolerance is how long renewals may fail (the controller unreachable)
	// before the cell gives up; counted from the last successful renewal, or
	// from when the Cycle was made.
	Tolerance time.Duration

	now         func() time.Time
	lastRenewal time.Time
	gc          *gcThreshCheck
	offloads    *offloadCheck
}

// NewCycle starts the partition-tolerance clock now.
func NewCycle(logger lager.Logger, client LeaseClient, conv *Converger, l lease.Lease, sender *metrics.Sender, tolerance time.Duration) *Cycle {
	return &Cycle{
		Logger: logger, Client: client, Converger: conv, Lease: l, Sender: sender, Tolerance: tolerance,
		now: time.Now, lastRenewal: time.Now(),
	}
}

// Run does one poll. A renewal refused as non-retriable (409: another cell
// holds the subnet, or the controller has a different lease for this cell),
// or failing for longer than the tolerance, is fatal (daemon.Fatal): the cell
// must be restarted. Any other failure ends this poll; the routes stay as
// they are until a later one succeeds.
func (c *Cycle) Run(ctx context.Context) error {
	if err := c.Client.Renew(ctx, c.Lease); err != nil {
		c.Sender.IncrementCounter(metricRenewFailure)
		err = fmt.Errorf("renew lease: %w", err)
		if controller.IsNonRetriable(err) || c.now().Sub(c.lastRenewal) >= c.Tolerance {
			return lifecycle.Fatal(err)
		}
		return err
	}
	c.lastRenewal = c.now()
	c.Logger.Debug("renew-lease", lager.Data{"lease": c.Lease})
	c.Sender.IncrementCounter(metricRenewSuccess)

	leases, err := c.Client.RoutableLeases(ctx)
	if err != nil {
		return fmt.Errorf("get routable leases: %w", err)
	}
	c.Sender.SendValue(metricNumberLeases, float64(len(leases)), "")

	res, err := c.Converger.Converge(leases)
	if err != nil {
		c.Sender.IncrementCounter(metricConvergeFailure)
		return fmt.Errorf("converge leases: %w", err)
	}
	c.Sender.IncrementCounter(metricConvergeSuccess)
	if res.Stats.NonRoutable > 0 {
		c.Logger.Info("converger", lager.Data{"non-routable-lease-count": res.Stats.NonRoutable})
	}
	if res.Stats.Invalid > 0 {
		c.Logger.Info("converger", lager.Data{"invalid-lease-count": res.Stats.Invalid})
	}
	// Upstream's line and data; the counts (netman writes only the
	// difference) go on a line of their own.
	c.Logger.Debug("converge-leases", lager.Data{"leases": leases})
	counts := lager.Data{"routes": res.Routes, "arp": res.ARP, "fdb": res.FDB, "writes": res.Writes}
	if res.NDP > 0 {
		counts["ndp"] = res.NDP // dual-stack cells only
	}
	c.Logger.Debug("converged", counts)
	c.gc.check(res.ARP)
	return c.offloads.check()
}
