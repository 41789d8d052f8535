package external

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/observe"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/cleanup"
	"github.com/netman-release/netman/src/policyserver/migratedb"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
)

// MetricsEmitInterval is how often the periodic metrics are sent
// (hard-coded upstream).
const MetricsEmitInterval = 30 * time.Second

// migrateRetryDelay is the pause between failed migration attempts.
const migrateRetryDelay = time.Second

// Run starts policy-server and blocks until ctx is cancelled or a member
// fails. Members start in upstream's order: metrics emitter, external
// server, stale-policy cleaner, debug server.
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config) error {
	verifier, access, tokens, cc, err := outbound(logger, cfg)
	if err != nil {
		return err
	}
	sender, err := metrics.NewSenderAt(logger.Session("metrics"), "policy-server", cfg.MetronAddress)
	if err != nil {
		return err
	}
	defer sender.Close()

	// Schema and tag pool first, retrying until database_migration_timeout
	// (another instance may be migrating); a timeout wraps
	// migratedb.ErrMigrationTimeout.
	if err := migratedb.Run(ctx, logger, migratedb.Config{
		Database: cfg.Database, DatabaseMigrationTimeout: cfg.DatabaseMigrationTimeout, TagLength: cfg.TagLength, Pool: cfg.Pool,
	}, migrateRetryDelay); err != nil {
		return err
	}
	logger.Info("migrations and groups table population are complete")

	db, closeDB, err := sqldb.Connect(ctx, logger, cfg.Database, cfg.Pool)
	if err != nil {
		return err
	}
	defer closeDB()

	st := store.New(db, cfg.TagLength, sender)
	var cleaner *cleanup.Cleaner
	if cc != nil {
		cleaner = cleanup.New(logger.Session("policy-cleaner"), st, tokens, cc)
	}
	opts := Options{
		Store:                           st,
		Verifier:                        verifier,
		Access:                          access,
		Quota:                           auth.NewQuota(st, cfg.MaxPolicies),
		Metrics:                         sender,
		EnableSpaceDeveloperSelfService: cfg.EnableSpaceDeveloperSelfService,
		EnableTLS:                       cfg.EnableTLS,
		AllowedCORSDomains:              cfg.AllowedCORSDomains,
		Start:                           time.Now(),
	}
	if cleaner != nil {
		opts.Cleaner = cleaner
	}
	api := New(logger, opts)

	tlsConfig, err := serverTLS(cfg)
	if err != nil {
		return err
	}

	members := []lifecycle.Member{
		{Name: "metrics_emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, MetricsEmitInterval, st.MetricSources()...)},
		{Name: "http_server", Runner: lifecycle.HTTPServer(logger.Session("http-server"), cfg.ListenAddress(), api.Handler(), tlsConfig)},
	}
	if cleaner != nil {
		members = append(members, lifecycle.Member{Name: "policy-cleaner-poller", Runner: lifecycle.Poller(logger.Session("policy-cleaner-poller"), "policy-cleaner-poller", cfg.CleanupEvery(), 0, cleaner.PollCycle())})
	} else {
		logger.Info("policy-cleaner-disabled", lager.Data{"reason": "auth_tokens_file is set: no Cloud Controller to ask which apps exist"})
	}
	members = append(members, lifecycle.Member{Name: "debug-server", Runner: lifecycle.HTTPServer(logger.Session("debug-server"), cfg.DebugAddress(), debugHandler(sink, sender, st, cfg.UICells), nil)})

	logger.Info("starting external server", lager.Data{"listen-address": cfg.ListenHost, "port": cfg.ListenPort})
	return lifecycle.RunContext(ctx, logger, members...)
}

// outbound builds token verification and access control: UAA and Cloud
// Controller clients, or the opt-in tokens file (then tokens and cc are
// nil).
func outbound(logger lager.Logger, cfg Config) (auth.Verifier, auth.Access, auth.TokenSource, *auth.CCClient, error) {
	if cfg.FileAuth() {
		fa, err := auth.LoadTokensFile(cfg.AuthTokensFile)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		// A choice the operator made, not a failure: info (lager has no
		// warning level), with the warning in its data.
		logger.Info("insecure-auth-tokens-file", lager.Data{
			"warning":          "UAA and Cloud Controller are NOT consulted: bearer tokens come from a plain file and non-admins are limited to the app guids it lists; for labs only, never in production",
			"auth_tokens_file": cfg.AuthTokensFile, "users": strings.Join(fa.Users(), ","),
		})
		return fa, auth.FileAccess{}, nil, nil, nil
	}
	httpClient, err := cfg.HTTPClient()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	uaa := cfg.UAA(logger, httpClient)
	cc := auth.NewCCClient(logger.Session("cc-client"), httpClient, cfg.CCURL)
	return uaa, auth.NewCCAccess(uaa, cc), uaa, cc, nil
}

func serverTLS(cfg Config) (*tls.Config, error) {
	if !cfg.EnableTLS {
		return nil, nil
	}
	c, err := mtls.ServerConfig(cfg.ServerCertFile, cfg.ServerKeyFile, "", mtls.WithoutClientAuth())
	if err != nil {
		return nil, fmt.Errorf("server tls config: %w", err)
	}
	return c, nil
}

// debugHandler is the debug server: upstream's log level, pprof and
// metrics, and netman's read-only page of the policy graph under /ui/,
// reading the cells' agents at cells (ui_cells) when given.
func debugHandler(sink *lager.ReconfigurableSink, sender *metrics.Sender, st *store.Store, cells []string) http.Handler {
	mux := http.NewServeMux()
	ui := &observe.UI{Policies: storePolicies{st}}
	for _, c := range cells {
		ui.Cells = append(ui.Cells, observe.NewAgentDebug(c, uiCellTimeout))
	}
	ui.Activity = observe.ActivitySources(ui.Cells)
	mux.Handle("/ui/", http.StripPrefix("/ui", ui.Handler()))
	mux.Handle("/", lifecycle.DebugHandler(sink, sender.Registry()))
	return mux
}

// uiCellTimeout bounds each request of the page to a cell's agent.
const uiCellTimeout = 5 * time.Second

// storePolicies reads the page's policies straight from the store.
type storePolicies struct{ st *store.Store }

func (s storePolicies) Policies(ctx context.Context, ids ...string) ([]policy.Policy, error) {
	if len(ids) == 0 {
		return s.st.All(ctx)
	}
	return s.st.ByGuids(ctx, ids, ids, false)
}

func (s storePolicies) LastUpdated(ctx context.Context) (int64, error) { return s.st.LastUpdated(ctx) }
