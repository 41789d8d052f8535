package locket

import (
	"context"
	"errors"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
)

// Lockable is one exclusive lock: in locket, or in a database.
type Lockable interface {
	// Acquire tries once to take the lock.
	Acquire(ctx context.Context) error
	// Refresh confirms the lock is still held (and extends it where it
	// expires); an error means it may be lost.
	Refresh(ctx context.Context) error
	// Release gives the lock up.
	Release(ctx context.Context) error
	// Describe is the lock's log session and data: upstream's
	// "locket-lock" {lock, ttl_in_seconds} for a lock in locket.
	Describe() (session string, data map[string]any)
}

// ErrCollision is another owner holding the lock. A lock that is not in
// locket wraps it in its Acquire error; locket's own refusal is recognised
// by its status code (IsLockCollision).
var ErrCollision = errors.New("lock-collision")

// isCollision reports whether err is the lock being held by another owner.
func isCollision(err error) bool {
	return errors.Is(err, ErrCollision) || IsLockCollision(err)
}

// callTimeout bounds every Acquire, Refresh and Release. With the 5 s
// retry interval, a lock that stops answering is given up at most 10 s
// after its last confirmation, inside locket's 15 s TTL: no other owner
// can have it while work still runs.
const callTimeout = 5 * time.Second

// Hold runs work while l is held, as upstream's lock runner (on l's
// session: started, acquired-lock, failed-to-acquire-lock, lost-lock,
// released-lock, completed). It tries to acquire every retry; once held it
// starts work and confirms the lock every retry. As upstream's runner,
// only the first failed attempt is logged when the lock is held by
// another owner, so a standby syncer does not log every 5 s; other
// failures (locket down) are logged every time. When a confirmation fails
// the lock counts as lost: work's context is cancelled at once, Hold waits
// for work to return, and goes back to acquiring (upstream exits the
// process instead, and its restart logs the next first attempt). Hold
// returns nil when ctx ends (after releasing the lock), or work's error
// when work returns on its own.
func Hold(ctx context.Context, logger lager.Logger, l Lockable, retry time.Duration, work func(context.Context) error) error {
	session, data := l.Describe()
	logger = logger.Session(session, lager.Data(data))
	logger.Info("started")
	defer logger.Info("completed")

	first := true
	for {
		if err := call(ctx, l.Acquire); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if first || !isCollision(err) {
				logger.Error("failed-to-acquire-lock", err)
			}
			first = false
			if !lifecycle.Sleep(ctx, retry) {
				return nil
			}
			continue
		}
		logger.Info("acquired-lock")
		lost, err := holding(ctx, logger, l, retry, work)
		if !lost {
			release(logger, l)
			return err
		}
		// Best effort: the lock may still be ours (a network blip).
		release(logger, l)
		first = true
		if !lifecycle.Sleep(ctx, retry) {
			return nil
		}
	}
}

// holding runs work until ctx ends, work returns, or the lock is lost.
func holding(ctx context.Context, logger lager.Logger, l Lockable, retry time.Duration, work func(context.Context) error) (lost bool, err error) {
	workCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- work(workCtx) }()

	ticker := time.NewTicker(retry)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			cancel()
			<-done
			return false, nil
		case err := <-done:
			if ctx.Err() != nil {
				return false, nil
			}
			return false, err
		case <-ticker.C:
			if err := call(ctx, l.Refresh); err != nil {
				if ctx.Err() != nil {
					continue // stopping: handled by the ctx case
				}
				logger.Error("lost-lock", err)
				cancel()
				<-done
				return true, nil
			}
		}
	}
}

func release(logger lager.Logger, l Lockable) {
	// The caller's ctx may be done (shutdown); releasing still deserves
	// its own short deadline.
	if err := call(context.Background(), l.Release); err != nil {
		logger.Error("failed-to-release-lock", err)
		return
	}
	logger.Info("released-lock")
}

func call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return fn(ctx)
}
