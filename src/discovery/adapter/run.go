package adapter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/lifecycle"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
)

// Origin is the adapter's dropsonde origin and logger name.
const Origin = "bosh-dns-adapter"

// ErrAddressNotAvailable is returned (wrapped) when the DNS address cannot
// be bound; upstream exits 1 with "Address (<addr>) not available".
var ErrAddressNotAvailable = errors.New("address not available")

// listenDNS binds the address bosh-dns calls. A port outside 1-65535 fails
// like an address in use, as upstream's listen failed on it; port 0 is
// refused rather than bound to a random port bosh-dns cannot know.
func listenDNS(address, port string) (net.Listener, error) {
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("listen tcp %s: port must be between 1 and 65535 (got %q)", address, port)
	}
	return net.Listen("tcp", address)
}

// Run starts bosh-dns-adapter and blocks until ctx is done or a member fails.
// The DNS address is bound first, as upstream, then the log-level address;
// members: dns-server, metrics-emitter, log-level-server.
func Run(ctx context.Context, logger lager.Logger, sink *lager.ReconfigurableSink, cfg Config) error {
	address := net.JoinHostPort(cfg.Address, cfg.Port)
	dnsListener, err := listenDNS(address, cfg.Port)
	if err != nil {
		logger.Error(fmt.Sprintf("Address (%s) not available", address), err)
		return fmt.Errorf("%w: %s: %w", ErrAddressNotAvailable, address, err)
	}
	defer dnsListener.Close()

	sender, err := metrics.NewSender(logger.Session("metrics"), Origin, cfg.MetronPort)
	if err != nil {
		logger.Error("Unable to initialize dropsonde", err, lager.Data{"metron_address": fmt.Sprintf("127.0.0.1:%d", cfg.MetronPort)})
		return err
	}
	defer sender.Close()

	tlsConfig, err := mtls.ClientConfig(cfg.ClientCert, cfg.ClientKey, cfg.CACert)
	if err != nil {
		logger.Error("Unable to create service discovery client", err)
		return err
	}
	client := NewClient("https://"+net.JoinHostPort(cfg.ServiceDiscoveryControllerAddress, cfg.ServiceDiscoveryControllerPort), tlsConfig)
	defer client.CloseIdleConnections()

	logLevel, err := discovery.ListenLogLevel(logger, cfg.LogLevelAddress, cfg.LogLevelPort)
	if err != nil {
		return err
	}
	defer logLevel.Close()

	dns := &http.Server{
		Handler:           lifecycle.MetricsMiddleware(sender, "GetIPs", NewHandler(logger, client, sender, cfg.ipv6())),
		ReadHeaderTimeout: cfg.readHeaderTimeout(),
	}
	return discovery.Run(ctx, logger, nil,
		discovery.ServeMember("dns-server", logger.Session("dns-server"), dnsListener, dns),
		lifecycle.Member{Name: "metrics-emitter", Runner: lifecycle.MetricsEmitter(logger.Session("metrics-emitter"), sender, time.Duration(cfg.MetricsEmitSeconds)*time.Second)},
		logLevel.Member(sink, sender.Registry().Handler()),
	)
}
