package lifecycle

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/tedsuo/ifrit"

	"github.com/netman-release/netman/src/metrics"
)

var (
	NextDelay = nextDelay
	NewServer = newServer
)

// HTTPServerOnListener is HTTPServer on a listener the test bound (port 0);
// the runner owns l and closes it.
func HTTPServerOnListener(logger lager.Logger, l net.Listener, h http.Handler, tlsConfig *tls.Config) ifrit.Runner {
	return HTTPServerOnListenerWithTimeout(logger, l, h, tlsConfig, shutdownTimeout)
}

func HTTPServerOnListenerWithTimeout(logger lager.Logger, l net.Listener, h http.Handler, tlsConfig *tls.Config, shutdown time.Duration) ifrit.Runner {
	return &httpServer{logger: logger, listener: l, handler: h, tlsConfig: tlsConfig, shutdownTimeout: shutdown}
}

func MetricsEmitterWithClock(logger lager.Logger, sender *metrics.Sender, interval time.Duration, now func() time.Time, sources ...metrics.Source) ifrit.Runner {
	return newMetricsEmitter(logger, sender, interval, now, sources...)
}
