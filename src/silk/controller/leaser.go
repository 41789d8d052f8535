// Package controller is silk-controller: it leases one subnet of the overlay
// network to each cell, keeps the leases in SQL, and serves them over mTLS.
package controller

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/silk/lease"
)

// Errors the API maps to upstream's status codes and texts.
var (
	ErrNoLeaseAvailable = errors.New("no lease available")
	ErrLeaseMismatch    = errors.New("lease mismatch")
)

// InvalidError is a request the controller can never satisfy as sent.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return e.Reason }

func invalid(format string, args ...any) error {
	return &InvalidError{Reason: fmt.Sprintf(format, args...)}
}

// adoptError is a renewal of an unknown lease that could not be recorded.
type adoptError struct{ err error }

func (e *adoptError) Error() string { return "adding entry: " + e.err.Error() }
func (e *adoptError) Unwrap() error { return e.err }

// acquireAttempts bounds the retries when another controller sharing the
// database takes the subnet this one picked.
const acquireAttempts = 10

// Leaser implements acquire, renew, release and list on top of the Store.
type Leaser struct {
	store             *Store
	pool              *lease.Pool
	expirationSeconds int
	logger            lager.Logger

	// Acquires are rare (a cell start) and cheap; serialising them inside
	// one process means concurrent requests never pick the same subnet, and
	// the unique constraints plus retries cover several controllers.
	acquireMu sync.Mutex
	rnd       *rand.Rand
}

// NewLeaser builds a Leaser for the pool.
func NewLeaser(logger lager.Logger, store *Store, pool *lease.Pool, expirationSeconds int) *Leaser {
	return &Leaser{
		store:             store,
		pool:              pool,
		expirationSeconds: expirationSeconds,
		logger:            logger,
		rnd:               rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())),
	}
}

// Acquire returns underlayIP's lease, allocating one when it has none. An
// existing lease wins over the single-IP flag, as upstream.
func (l *Leaser) Acquire(ctx context.Context, underlayIP string, single bool) (lease.Lease, error) {
	if a, err := netip.ParseAddr(underlayIP); err != nil || !a.Is4() {
		return lease.Lease{}, invalid("invalid ipv4 address: %s", underlayIP)
	}
	l.acquireMu.Lock()
	defer l.acquireMu.Unlock()

	existing, found, err := l.store.ByUnderlayIP(ctx, underlayIP)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("getting lease for underlay ip: %w", err)
	}
	if found {
		if l.pool.IsMember(existing.OverlaySubnet) {
			// A cell asking for its lease is alive: unlike upstream, refresh
			// it so that an expired lease is routable again at once.
			if _, err := l.store.Touch(ctx, existing); err != nil {
				return lease.Lease{}, fmt.Errorf("renewing existing lease: %w", err)
			}
			l.logger.Info("lease-renewed", lager.Data{"lease": existing})
			return existing, nil
		}
		// The network or subnet size changed under this lease.
		if _, err := l.store.DeleteByUnderlayIP(ctx, underlayIP); err != nil {
			return lease.Lease{}, fmt.Errorf("deleting lease outside the pool: %w", err)
		}
		l.logger.Info("lease-deleted", lager.Data{"lease": existing})
	}

	var lastErr error
	for attempt := 0; attempt < acquireAttempts; attempt++ {
		got, err := l.tryAcquire(ctx, underlayIP, single)
		if err == nil {
			l.logger.Info("lease-acquired", lager.Data{"lease": got})
			return got, nil
		}
		if ctx.Err() != nil {
			return lease.Lease{}, ctx.Err()
		}
		lastErr = err
	}
	return lease.Lease{}, lastErr
}

func (l *Leaser) tryAcquire(ctx context.Context, underlayIP string, single bool) (lease.Lease, error) {
	taken, err := l.store.TakenSubnets(ctx, single)
	if err != nil {
		return lease.Lease{}, fmt.Errorf("reading taken subnets: %w", err)
	}
	subnet, ok := l.pool.RandomFree(single, taken, l.rnd)
	if !ok {
		expired, found, err := l.store.OldestExpired(ctx, single, l.expirationSeconds)
		if err != nil {
			return lease.Lease{}, fmt.Errorf("finding expired lease: %w", err)
		}
		if !found {
			return lease.Lease{}, ErrNoLeaseAvailable
		}
		deleted, err := l.store.DeleteIfExpired(ctx, expired, l.expirationSeconds)
		if err != nil {
			return lease.Lease{}, fmt.Errorf("deleting expired lease: %w", err)
		}
		if !deleted {
			return lease.Lease{}, fmt.Errorf("expired lease %s was renewed or taken meanwhile", expired.OverlaySubnet)
		}
		l.logger.Info("reclaimed-expired-lease", lager.Data{"lease": expired})
		subnet = expired.OverlaySubnet
	}
	hw, err := lease.HardwareAddr(subnet)
	if err != nil {
		return lease.Lease{}, err
	}
	got := lease.Lease{UnderlayIP: underlayIP, OverlaySubnet: subnet, OverlayHardwareAddr: hw}
	if err := l.store.Insert(ctx, got); err != nil {
		return lease.Lease{}, fmt.Errorf("adding lease entry: %w", err)
	}
	return got, nil
}

// Renew refreshes a lease the cell already holds. A lease the controller has
// never seen is adopted (a controller whose database was lost learns the
// cells' leases back this way); one that differs from the stored lease for
// that underlay IP is a mismatch. adopted reports a newly recorded lease.
func (l *Leaser) Renew(ctx context.Context, presented lease.Lease) (adopted bool, err error) {
	if err := presented.Validate(); err != nil {
		return false, invalid("%s", err)
	}
	hit, err := l.store.Touch(ctx, presented)
	if err != nil {
		return false, err
	}
	if hit {
		l.logger.Debug("lease-renewed", lager.Data{"lease": presented})
		return false, nil
	}
	stored, found, err := l.store.ByUnderlayIP(ctx, presented.UnderlayIP)
	if err != nil {
		return false, err
	}
	if found {
		if stored != presented {
			l.logger.Info("lease-mismatch", lager.Data{"presented": presented, "stored": stored})
			return false, ErrLeaseMismatch
		}
		// Re-inserted by another request between the two statements.
		return false, nil
	}
	if err := l.store.Insert(ctx, presented); err != nil {
		return false, &adoptError{err: err}
	}
	l.logger.Info("lease-adopted", lager.Data{"lease": presented})
	return true, nil
}

// Release forgets underlayIP's lease; releasing nothing succeeds.
func (l *Leaser) Release(ctx context.Context, underlayIP string) error {
	if a, err := netip.ParseAddr(underlayIP); err != nil || !a.Is4() {
		return invalid("invalid ipv4 address: %s", underlayIP)
	}
	deleted, err := l.store.DeleteByUnderlayIP(ctx, underlayIP)
	if err != nil {
		return err
	}
	if !deleted {
		l.logger.Debug("lease-not-found", lager.Data{"underlay_ip": underlayIP})
		return nil
	}
	l.logger.Info("lease-released", lager.Data{"underlay_ip": underlayIP})
	return nil
}

// Routable lists the leases renewed within the expiration window.
func (l *Leaser) Routable(ctx context.Context) ([]lease.Lease, error) {
	return l.store.Routable(ctx, l.expirationSeconds)
}
