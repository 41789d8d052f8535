package agent

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent/appmetrics"
	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/nft"
)

// appMetrics keeps the per-app counting rules in step with the metadata
// store and exports their counters (enable_app_metrics).
type appMetrics struct {
	logger    lager.Logger
	store     *metadata.Store
	collector *appmetrics.Collector
}

func newAppMetrics(logger lager.Logger, store *metadata.Store, dp appmetrics.DataPlane, maxSeries int) *appMetrics {
	return &appMetrics{logger: logger, store: store, collector: appmetrics.NewCollector(dp, maxSeries)}
}

// Sync reads the store and syncs the counting rules (a write only when
// the containers changed).
func (a *appMetrics) Sync(ctx context.Context) error {
	all, err := a.store.ReadAll(ctx)
	if err != nil {
		return fmt.Errorf("reading container metadata: %w", err)
	}
	return a.collector.Sync(ctx, appmetrics.Instances(all))
}

// members are the sync poller (every interval, as the policy cycle's
// poll) and the envelope emitter (every emitEvery).
func (a *appMetrics) members(interval, emitEvery time.Duration, sender *metrics.Sender) []lifecycle.Member {
	return []lifecycle.Member{
		{Name: "app-metrics-sync", Runner: lifecycle.Poller(a.logger.Session("app-metrics-sync"), "app-metrics-sync", interval, interval/10, a.Sync)},
		{Name: "app-metrics-emitter", Runner: lifecycle.Poller(a.logger.Session("app-metrics-emitter"), "app-metrics-emitter", emitEvery, 0,
			func(ctx context.Context) error { return a.collector.Emit(ctx, sender) })},
	}
}

// metricsHandler is the debug server's /metrics with the app series after
// the registry's. A failed read of the counters still serves the
// registry, and says why in a comment line.
func metricsHandler(reg *metrics.Registry, apps *appMetrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		w.Header().Set("Content-Type", metrics.ContentType)
		_ = reg.WritePrometheus(w)
		if err := apps.collector.WritePrometheus(r.Context(), w); err != nil {
			apps.logger.Error("app-metrics-scrape", err)
			_, _ = fmt.Fprintf(w, "# app metrics unavailable: %q\n", err.Error())
		}
	})
}

// appMetricsPlane is the counting rules' DataPlane for backend.
func appMetricsPlane(backend Backend, driver *iptables.Driver) appmetrics.DataPlane {
	if backend == BackendNFTables {
		return &appmetrics.NFT{}
	}
	return appmetrics.IPTables{Driver: driver}
}

// removeAppMetrics removes counting rules the agent does not want: the
// iptables chains whatever the backend when metrics are off or the
// backend is nftables, and the nftables objects when metrics are off on
// the nftables backend (the iptables backend deletes the whole table).
func removeAppMetrics(ctx context.Context, enabled bool, backend Backend, driver *iptables.Driver, k nft.Driver) error {
	if !enabled || backend == BackendNFTables {
		_, err := driver.Update(ctx, iptables.Mangle, func(cur *iptables.State) (*iptables.Tx, error) {
			return appmetrics.RemoveIPTables(cur), nil
		})
		if err != nil {
			return fmt.Errorf("removing the app metrics chains: %w", err)
		}
	}
	if !enabled && backend == BackendNFTables {
		names, err := k.ChainNames(ctx)
		if err != nil {
			return err
		}
		if names[appmetrics.ChainFirst] || names[appmetrics.ChainLast] {
			return appmetrics.RemoveNFTObjects(ctx)
		}
	}
	return nil
}
