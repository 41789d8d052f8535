package lifecycle

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"
)

const (
	// shutdownTimeout bounds graceful shutdown: in-flight requests get this
	// long to finish before connections are closed.
	shutdownTimeout = 10 * time.Second
	// readHeaderTimeout stops slow-header clients from holding connections.
	readHeaderTimeout = 10 * time.Second
	// idleTimeout recycles keep-alive connections of clients that went quiet.
	idleTimeout = 2 * time.Minute
)

// HTTPServer returns a runner serving h on addr, with TLS when tlsConfig is
// non-nil (it must carry the server certificate). The runner binds before
// signalling ready, so a bind failure such as "address already in use" is the
// runner's error. On a signal it shuts down gracefully, waiting at most 10 s
// for in-flight requests before closing the remaining connections.
func HTTPServer(logger lager.Logger, addr string, h http.Handler, tlsConfig *tls.Config) ifrit.Runner {
	return &httpServer{logger: logger, addr: addr, handler: h, tlsConfig: tlsConfig, shutdownTimeout: shutdownTimeout}
}

type httpServer struct {
	logger          lager.Logger
	addr            string
	listener        net.Listener
	handler         http.Handler
	tlsConfig       *tls.Config
	shutdownTimeout time.Duration
}

func (s *httpServer) Run(signals <-chan os.Signal, ready chan<- struct{}) error {
	if c := s.tlsConfig; c != nil && len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil {
		if s.listener != nil {
			s.listener.Close()
		}
		return errors.New("http server: tls config has no server certificate")
	}
	l := s.listener
	if l == nil {
		var err error
		l, err = net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("listen on %s: %w", s.addr, err)
		}
	}
	srv := newServer(s.logger, s.handler, s.tlsConfig)

	served := ServeAsync(srv, l)
	s.logger.Info("listening", lager.Data{"address": l.Addr().String(), "tls": s.tlsConfig != nil})
	close(ready)

	select {
	case err := <-served:
		return fmt.Errorf("serve on %s: %w", l.Addr(), err)
	case <-signals:
	}

	ctx, cancel := context.WithTimeout(context.Background(), s.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		s.logger.Info("graceful-shutdown-timed-out", lager.Data{"error": err.Error()})
		_ = srv.Close() // only fails with the listener error Shutdown already hit
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve on %s: %w", l.Addr(), err)
	}
	return nil
}

func newServer(logger lager.Logger, h http.Handler, tlsConfig *tls.Config) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		ErrorLog:          ErrorLog(logger),
	}
	if tlsConfig != nil {
		srv.TLSConfig = tlsConfig.Clone()
	}
	return srv
}

// logWriter routes net/http's own diagnostics (TLS handshake failures, panics
// in handlers) into the structured log instead of bare stderr.
type logWriter struct{ logger lager.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.logger.Info("http-server", lager.Data{"message": string(bytes.TrimSpace(p))})
	return len(p), nil
}
