package internalapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policyserver/router"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// Component is the job name: log component, metrics origin.
const Component = "policy-server-internal"

// MetricsEmitInterval is how often the periodic metrics are sent
// (hard-coded upstream).
const MetricsEmitInterval = 30 * time.Second

// Start-up migration: policy-server and migrate-db may be migrating the same
// database, so failures are retried until migrateTimeout.
const (
	migrateTimeout    = 2 * time.Minute
	migrateRetryDelay = time.Second
)

// Run starts policy-server-internal and blocks until ctx is cancelled or a
// member fails. Members start in upstream's order (metrics emitter,
// internal server, debug server, health server), then netman's
// policies_last_updated and security_groups_last_updated watchers, which
// are therefore stopped first and release long-polls before the internal
// server drains.
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config) error {
	tlsConfig, err := mtls.ServerConfig(cfg.ServerCertFile, cfg.ServerKeyFile, cfg.CACertFile)
	if err != nil {
		return fmt.Errorf("mutual tls config: %w", err)
	}
	sender, err := metrics.NewSenderAt(logger.Session("metrics"), Component, cfg.MetronAddress)
	if err != nil {
		return err
	}
	defer sender.Close()

	db, closeDB, err := sqldb.Connect(ctx, logger, cfg.Database, cfg.Pool)
	if err != nil {
		return err
	}
	defer closeDB()
	if err := migrate(ctx, logger, db, cfg.TagLength); err != nil {
		return err
	}

	st := store.New(db, cfg.TagLength, sender)
	watcher := NewPolicyWatcher(st.PolicySnapshot, DefaultWatchInterval)
	sgWatcher := NewWatcher(st.SecurityGroupsLastUpdated, DefaultWatchInterval)
	api := NewAPI(logger, st, st, watcher, sender).WatchSecurityGroups(sgWatcher).CachePlainPolls(PlainPollTTL)
	wrap := func(name string, h http.Handler) http.Handler {
		return lifecycle.MetricsMiddleware(sender, name, LogRequests(logger, h))
	}
	health := router.Router(HealthRoutes(logger, sender, time.Now(), st.CheckDatabase))
	for i := range health {
		health[i].Handler = wrap(health[i].Name, health[i].Handler)
	}

	members := []lifecycle.Member{
		{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, MetricsEmitInterval, st.MetricSources()...)},
		{Name: "internal-http-server", Runner: lifecycle.HTTPServer(logger.Session("internal-http-server"), hostPort(cfg.ListenHost, cfg.InternalListenPort), api.Handler(wrap), tlsConfig)},
		{Name: "debug-server", Runner: lifecycle.HTTPServer(logger.Session("debug-server"), hostPort(cfg.DebugServerHost, cfg.DebugServerPort), lifecycle.DebugHandler(sink, sender.Registry()), nil)},
		{Name: "health-check-server", Runner: lifecycle.HTTPServer(logger.Session("health-check-server"), hostPort("127.0.0.1", cfg.HealthCheckPort), health, nil)},
		// A poller whose one cycle lasts until shutdown: the watcher
		// idles (no queries) while nobody long-polls.
		{Name: "policies-last-updated-watcher", Runner: lifecycle.Poller(logger, "", time.Hour, 0, watcher.Run)},
		{Name: "security-groups-last-updated-watcher", Runner: lifecycle.Poller(logger, "", time.Hour, 0, sgWatcher.Run)},
	}
	logger.Info("starting internal server", lager.Data{"listen-address": cfg.ListenHost, "port": cfg.InternalListenPort})
	return lifecycle.RunContext(ctx, logger, members...)
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// migrate brings the schema to upstream's final version and fills an empty
// tag pool, so the internal server also works on a database nothing else
// has migrated yet.
func migrate(ctx context.Context, logger lager.Logger, db *sqldb.DB, tagLength int) error {
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	for {
		err := migrateOnce(ctx, logger, db, tagLength)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("migrating database: gave up after %s: %w", migrateTimeout, err)
			}
			return ctx.Err()
		case <-time.After(migrateRetryDelay):
			logger.Info("retrying-migrations", lager.Data{"error": err.Error()})
		}
	}
}

func migrateOnce(ctx context.Context, logger lager.Logger, db *sqldb.DB, tagLength int) error {
	n, err := store.Migrate(ctx, db)
	if err != nil {
		return fmt.Errorf("perform migrations: %w", err)
	}
	logger.Info("finished running migrations", lager.Data{"num-migrations-completed": n})
	if err := store.PopulateTables(ctx, db, tagLength); err != nil {
		return fmt.Errorf("populating groups table: %w", err)
	}
	return nil
}
