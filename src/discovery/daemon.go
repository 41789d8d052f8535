package discovery

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
)

// LogLevelServer is both discovery daemons' log-level server, bound when it
// is made so that a taken port fails the start, as upstream.
type LogLevelServer struct {
	logger   lager.Logger
	listener net.Listener
}

// ListenLogLevel binds address:port for the log-level server, logging
// upstream's line when it cannot.
func ListenLogLevel(logger lager.Logger, address string, port int) (*LogLevelServer, error) {
	logger = logger.Session("log-level-server")
	l, err := net.Listen("tcp", net.JoinHostPort(address, fmt.Sprint(port)))
	if err != nil {
		logger.Error("Listen and serve exited with error:", err)
		return nil, err
	}
	return &LogLevelServer{logger: logger, listener: l}, nil
}

// Close releases the port (after the member has stopped serving it).
func (s *LogLevelServer) Close() error { return s.listener.Close() }

// Member serves LogLevelHandler (sink's level, and metrics at /metrics)
// without keep-alives, as upstream's server.
func (s *LogLevelServer) Member(sink *lager.ReconfigurableSink, metrics http.Handler) lifecycle.Member {
	srv := &http.Server{
		Handler:           LogLevelHandler(s.logger, sink, metrics),
		ReadHeaderTimeout: 10 * time.Second,
	}
	srv.SetKeepAlivesEnabled(false)
	return ServeMember("log-level-server", s.logger, s.listener, srv)
}

// ServeMember is the member Serve-ing srv on l until the daemon stops.
func ServeMember(name string, logger lager.Logger, l net.Listener, srv *http.Server) lifecycle.Member {
	return lifecycle.Member{Name: name, Runner: lifecycle.Loop(func(ctx context.Context) error {
		return Serve(ctx, logger, l, srv)
	})}
}

// Run runs a discovery daemon's members, then one that logs upstream's
// "server-started" once all are up and calls started (when set). It logs
// upstream's "ifrit-failure" when a member fails and "server-stopped" when
// all have stopped.
func Run(ctx context.Context, logger lager.Logger, started func(), members ...lifecycle.Member) error {
	members = append(members, lifecycle.Member{Name: "started", Runner: lifecycle.Loop(func(ctx context.Context) error {
		logger.Info("server-started")
		if started != nil {
			started()
		}
		<-ctx.Done()
		return nil
	})})
	if err := lifecycle.RunContext(ctx, logger, members...); err != nil {
		logger.Error("ifrit-failure", err)
		return err
	}
	logger.Info("server-stopped")
	return nil
}
