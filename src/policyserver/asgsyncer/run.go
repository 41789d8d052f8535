package asgsyncer

import (
	"context"
	"fmt"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/locket"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// storePool is upstream's hard-coded pool for the syncer: one connection,
// kept forever.
var storePool = sqldb.Pool{MaxOpenConnections: 1, MaxIdleConnections: 1}

// Run starts the syncer and blocks until ctx ends or it fails for good
// (a broken config found at start). Cloud Controller, UAA, database and
// lock failures are logged, counted and retried; they never end it.
func Run(ctx context.Context, logger lager.Logger, cfg Config) error {
	sender, err := metrics.NewSenderAt(logger.Session("metrics"), Component, cfg.MetronAddress)
	if err != nil {
		return err
	}
	defer sender.Close()

	cc, tokens, err := newClients(logger, cfg)
	if err != nil {
		return err
	}

	db, closeDB, err := sqldb.Connect(ctx, logger, cfg.Database, storePool)
	if err != nil {
		return err
	}
	defer closeDB()

	lock, closeLock, err := newLock(ctx, logger, cfg)
	if err != nil {
		return err
	}
	defer closeLock()

	syncer := NewSyncer(logger, tokens, cc, store.New(db, 0, sender), sender, cfg.RetryDeadline())
	logger.Info("starting asg syncer")
	return lifecycle.RunContext(ctx, logger, lifecycle.Member{
		Name: "asg-locker",
		Runner: lifecycle.Loop(func(ctx context.Context) error {
			return locket.Hold(ctx, logger, lock, locket.RetryInterval, func(ctx context.Context) error {
				return syncer.Loop(ctx, logger.Session("asg-syncer"), cfg.PollInterval())
			})
		}),
	})
}

// Loop polls at once (the lock was just taken: the table may be stale),
// then every interval, until ctx ends. Failed cycles are logged as
// "poll-cycle" and retried at the next interval.
func (s *Syncer) Loop(ctx context.Context, logger lager.Logger, interval time.Duration) error {
	s.ResetMarker()
	for {
		if err := s.Poll(ctx); err != nil && ctx.Err() == nil {
			logger.Error("poll-cycle", err)
		}
		if !lifecycle.Sleep(ctx, interval) {
			return nil
		}
	}
}

func newClients(logger lager.Logger, cfg Config) (*CCClient, *auth.UAAClient, error) {
	public, err := cfg.HTTPClient()
	if err != nil {
		return nil, nil, err
	}
	internalTLS, err := mtls.ClientConfig(cfg.CCInternalClientCert, cfg.CCInternalClientKey, cfg.CCInternalCA)
	if err != nil {
		return nil, nil, fmt.Errorf("cloud controller internal mutual tls config: %w", err)
	}
	internal := auth.NewHTTPClient(internalTLS, cfg.Timeout())
	return NewCCClient(logger, public, cfg.CCURL, internal, cfg.CCInternalURL), cfg.UAA(logger, public), nil
}

// newLock is the locket lease when locket is configured, else the lock in
// the policy database (with its own one-connection pool for postgres and
// mysql, so the store never waits behind the held session).
func newLock(ctx context.Context, logger lager.Logger, cfg Config) (locket.Lockable, func(), error) {
	if cfg.UseLocket() {
		tlsConfig, err := mtls.ClientConfig(cfg.LocketClientCertFile, cfg.LocketClientKeyFile, cfg.LocketCACertFile)
		if err != nil {
			return nil, nil, fmt.Errorf("failed-to-create-locket-client using: %w", err)
		}
		client, err := locket.NewClient(cfg.LocketAddress, tlsConfig, locket.ClientOptions{
			KeepaliveTime:    time.Duration(cfg.LocketClientKeepaliveTime),
			KeepaliveTimeout: time.Duration(cfg.LocketClientKeepaliveTimeout),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("failed-to-create-locket-client using: %w", err)
		}
		return locket.NewLease(client, LockKey, cfg.UUID, locket.DefaultSessionTTLInSeconds), func() { _ = client.Close() }, nil
	}
	var lockDB *sqldb.DB
	if cfg.Database.Type != sqldb.TypeSQLite {
		var err error
		lockDB, err = sqldb.Open(ctx, logger.Session("lock-db"), cfg.Database, storePool)
		if err != nil {
			return nil, nil, fmt.Errorf("db connect for lock: %w", err)
		}
	}
	lock, err := NewDBLock(cfg.Database, lockDB, cfg.UUID)
	if err != nil {
		if lockDB != nil {
			closeDB(logger, lockDB)
		}
		return nil, nil, err
	}
	return lock, func() {
		if lockDB != nil {
			closeDB(logger, lockDB)
		}
	}, nil
}

func closeDB(logger lager.Logger, db *sqldb.DB) {
	if err := db.Close(); err != nil {
		logger.Error("error-closing-connection-pool", err)
	}
}
