package discovery

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/lifecycle"
)

// ShutdownTimeout bounds how long Serve waits for in-flight requests when
// it is stopped.
const ShutdownTimeout = 10 * time.Second

// Serve serves srv on the already bound l — with TLS when srv.TLSConfig is
// set — until ctx is done, then shuts down gracefully. It exists beside
// daemon.HTTPServer because both discovery daemons take their
// ReadHeaderTimeout from config, and because binding first lets a daemon
// refuse to start at all when one of its ports is taken, as upstream's
// bosh-dns-adapter does.
func Serve(ctx context.Context, logger lager.Logger, l net.Listener, srv *http.Server) error {
	if srv.ErrorLog == nil {
		srv.ErrorLog = lifecycle.ErrorLog(logger)
	}
	served := lifecycle.ServeAsync(srv, l)
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
