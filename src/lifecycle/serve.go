package lifecycle

import (
	"log"
	"net"
	"net/http"

	"code.cloudfoundry.org/lager/v3"
)

// ServeAsync starts serving srv on l, with TLS when srv.TLSConfig is set
// (it must carry the certificate); the channel receives what Serve returned.
func ServeAsync(srv *http.Server, l net.Listener) <-chan error {
	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(l, "", "")
		} else {
			served <- srv.Serve(l)
		}
	}()
	return served
}

// ErrorLog sends net/http's own diagnostics (TLS handshake failures, panics
// in handlers) to logger as "http-server" lines instead of bare stderr.
func ErrorLog(logger lager.Logger) *log.Logger { return log.New(logWriter{logger}, "", 0) }
