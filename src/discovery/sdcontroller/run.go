// Package sdcontroller is service-discovery-controller: it subscribes to
// the route emitter's registrations over NATS and serves the internal
// domain's address table to bosh-dns-adapter over mutual TLS.
package sdcontroller

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/addresstable"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
)

// Origin is the controller's dropsonde origin and logger name.
const Origin = "service-discovery-controller"

// Option adjusts Run.
type Option func(*runOptions)

type runOptions struct {
	natsOptions []nats.Option
	started     func(*addresstable.Table)
}

// WithNATSOptions adds nats.Options to the subscriber's connection (tests:
// a short reconnect wait).
func WithNATSOptions(opts ...nats.Option) Option {
	return func(o *runOptions) { o.natsOptions = append(o.natsOptions, opts...) }
}

// WithStarted calls f with the address table once every member is running
// (tests and benchmarks that look at the table directly).
func WithStarted(f func(*addresstable.Table)) Option {
	return func(o *runOptions) { o.started = f }
}

// Run starts service-discovery-controller and blocks until ctx is done or
// a member fails. Both ports are bound and NATS is connected before any
// member starts, so a taken port or unreachable NATS fails the start.
// Members, in upstream's order after the pruner: subscriber,
// metrics-emitter, log-level-server, routes-server.
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config, opts ...Option) error {
	var o runOptions
	for _, opt := range opts {
		opt(&o)
	}
	serverTLS, err := mtls.ServerConfig(cfg.ServerCert, cfg.ServerKey, cfg.CACert, mtls.InternalServiceDefaults())
	if err != nil {
		return fmt.Errorf("server tls config: %w", err)
	}
	natsOptions := append([]nats.Option(nil), o.natsOptions...)
	if cfg.Nats.TLSEnabled {
		natsTLS, err := mtls.ClientConfig(cfg.Nats.CertChain, cfg.Nats.PrivateKey, cfg.Nats.CACerts, mtls.InternalServiceDefaults())
		if err != nil {
			return fmt.Errorf("error building TLS config for NATS: %w", err)
		}
		natsOptions = append([]nats.Option{nats.Secure(natsTLS)}, natsOptions...)
	}

	logLevel, err := discovery.ListenLogLevel(logger, cfg.LogLevelAddress, cfg.LogLevelPort)
	if err != nil {
		return err
	}
	defer logLevel.Close()
	apiListener, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, cfg.Port))
	if err != nil {
		return fmt.Errorf("routes server: %w", err)
	}
	defer apiListener.Close()

	sender, err := metrics.NewSender(logger.Session("metrics"), Origin, cfg.MetronPort)
	if err != nil {
		return err
	}
	defer sender.Close()

	table := addresstable.New(logger.Session("address-table"),
		time.Duration(cfg.StalenessThresholdSeconds)*time.Second,
		time.Duration(cfg.ResumePruningDelaySeconds)*time.Second)
	recorder := NewRecorder(nil)

	id, err := uuid.NewRandom()
	if err != nil {
		return err
	}
	subscriber, err := Subscribe(logger.Session("mbus"), SubscriberConfig{
		URL:                              cfg.natsURL(),
		ID:                               cfg.Index + "-" + id.String(),
		Host:                             localIP(logger),
		MinimumRegisterIntervalInSeconds: cfg.ResumePruningDelaySeconds,
		WarmDuration:                     time.Duration(cfg.WarmDurationSeconds) * time.Second,
		Options:                          natsOptions,
		Debug:                            func() bool { return sink.GetMinLevel() <= lager.DEBUG },
	}, table, recorder)
	if err != nil {
		logger.Error("Failed to build subscriber", err)
		return err
	}
	defer subscriber.Close()

	routesLogger := logger.Session("routes-server")
	api := &http.Server{
		Handler:           NewAPI(routesLogger, table, sender, recorder).Handler(),
		TLSConfig:         serverTLS,
		ReadHeaderTimeout: time.Duration(cfg.ReadHeaderTimeout),
	}
	var started func()
	if o.started != nil {
		started = func() { o.started(table) }
	}
	interval := time.Duration(cfg.PruningIntervalSeconds) * time.Second
	return discovery.Run(ctx, logger, started,
		lifecycle.Member{Name: "pruner", Runner: lifecycle.Loop(func(ctx context.Context) error { return table.PruneEvery(ctx, interval) })},
		lifecycle.Member{Name: "subscriber", Runner: lifecycle.Loop(subscriber.Run)},
		lifecycle.Member{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, time.Duration(cfg.MetricsEmitSeconds)*time.Second, recorder.Sources()...)},
		logLevel.Member(sink, sender.Registry().Handler()),
		discovery.ServeMember("routes-server", routesLogger, apiListener, api),
	)
}

// localIP is the address this VM reaches the rest of the deployment from:
// the source address of a UDP "connection" to a public address, as upstream.
// Where there is no route (an isolated lab namespace) it falls back to the
// first non-loopback IPv4 address, then to 127.0.0.1, rather than refusing to
// start: the value only identifies the controller in its start message.
func localIP(logger lager.Logger) string {
	if conn, err := net.Dial("udp4", "1.2.3.4:1"); err == nil {
		defer conn.Close()
		return conn.LocalAddr().(*net.UDPAddr).IP.String()
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
				return n.IP.String()
			}
		}
	}
	logger.Info("local-ip-fallback", lager.Data{"ip": "127.0.0.1"})
	return "127.0.0.1"
}
