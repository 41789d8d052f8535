package controller

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/silk/lease"
	"github.com/netman-release/netman/src/sqldb"
)

// Migration retries at start-up, as upstream: another controller may be
// migrating the same database.
const (
	migrateAttempts = 5
	migrateDelay    = time.Second
)

// Run starts silk-controller and blocks until ctx is cancelled or a member
// fails. The start order is upstream's: API, health, debug, metrics. It logs
// upstream's "starting-servers" before the servers start and "running" once
// all are ready; the main logs "starting", "parsed-config" and "exited".
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config) error {
	tlsConfig, err := mtls.ServerConfig(cfg.ServerCertFile, cfg.ServerKeyFile, cfg.CACertFile)
	if err != nil {
		return fmt.Errorf("server tls config: %w", err)
	}
	pool, err := lease.NewPool(cfg.Network, cfg.SubnetPrefixLength)
	if err != nil {
		return err
	}
	db, err := sqldb.Open(ctx, logger.Session("db"), cfg.Database, cfg.Pool)
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := sqldb.MigrateWithRetry(ctx, db, Migrations, migrateAttempts, migrateDelay); err != nil {
		return err
	}
	sender, err := metrics.NewSender(logger.Session("metrics"), "silk-controller", cfg.MetronPort)
	if err != nil {
		return err
	}
	defer sender.Close()

	store := NewStore(db)
	leaser := NewLeaser(logger, store, pool, cfg.LeaseExpirationSeconds) // upstream's lease lines are on the root logger
	api := NewAPI(logger.Session("api"), leaser, sender, IndexCacheTTL)
	apiHandler := api.Handler(func(name string, h http.Handler) http.Handler {
		return lifecycle.LogRequests(logger.Session("request"), lifecycle.MetricsMiddleware(sender, name, h))
	})
	health := lifecycle.MetricsMiddleware(sender, "Health", HealthHandler(logger.Session("health"), db.PingContext))

	sources := append(leaseMetricSources(store, pool, cfg.StalenessThresholdSeconds), db.MetricSources()...)
	logger.Info("starting-servers")
	err = lifecycle.RunContext(ctx, logger,
		lifecycle.Member{Name: "server", Runner: lifecycle.HTTPServer(logger.Session("server"), hostPort(cfg.ListenHost, cfg.ListenPort), apiHandler, tlsConfig)},
		lifecycle.Member{Name: "health-server", Runner: lifecycle.HTTPServer(logger.Session("health-server"), hostPort("127.0.0.1", cfg.HealthCheckPort), health, nil)},
		lifecycle.Member{Name: "debug-server", Runner: lifecycle.HTTPServer(logger.Session("debug-server"), hostPort("127.0.0.1", cfg.DebugServerPort), lifecycle.DebugHandler(sink, sender.Registry()), nil)},
		lifecycle.Member{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, time.Duration(cfg.MetricsEmitSeconds)*time.Second, sources...)},
		lifecycle.Member{Name: "running", Runner: lifecycle.OnReady(func() { logger.Info("running") })},
	)
	if err != nil {
		return fmt.Errorf("wait returned error: %w", err)
	}
	return nil
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// leaseMetricSources are totalLeases, freeLeases and staleLeases. Unlike
// upstream, freeLeases does not subtract single-IP leases from the block
// pool they are not part of.
func leaseMetricSources(store *Store, pool *lease.Pool, stalenessSeconds int) []metrics.Source {
	count := func(name string, f func(Counts) int) metrics.Source {
		return metrics.Source{Name: name, Get: func(ctx context.Context) (float64, error) {
			c, err := store.Count(ctx, stalenessSeconds)
			return float64(f(c)), err
		}}
	}
	return []metrics.Source{
		count("totalLeases", func(c Counts) int { return c.Total }),
		count("freeLeases", func(c Counts) int { return pool.BlockCount() - c.Blocks }),
		count("staleLeases", func(c Counts) int { return c.Total - c.Fresh }),
	}
}
