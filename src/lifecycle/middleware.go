package lifecycle

import (
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"code.cloudfoundry.org/lager/v3/lagerctx"

	"github.com/netman-release/netman/src/metrics"
)

// MetricsMiddleware times every request to h and, once it has been served,
// sends "<name>RequestTime" (ms) and increments "<name>RequestCount", as
// upstream's metrics wrapper does (e.g. name "LeasesAcquire").
func MetricsMiddleware(sender *metrics.Sender, name string, h http.Handler) http.Handler {
	timeMetric, countMetric := name+"RequestTime", name+"RequestCount"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		sender.SendDuration(timeMetric, time.Since(start))
		sender.IncrementCounter(countMetric)
	})
}

// LogRequests logs debug "request.serving" and "request.done" around every
// request to h, with its method and URL, as upstream's log wrapper does. The
// request's session logger is in the request context (lagerctx.FromContext)
// so handlers can log with the same session.
func LogRequests(logger lager.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqLogger := logger.Session("request", lager.Data{
			"method":  r.Method,
			"request": r.URL.String(),
		})
		reqLogger.Debug("serving")
		defer reqLogger.Debug("done")
		h.ServeHTTP(w, r.WithContext(lagerctx.NewContext(r.Context(), reqLogger)))
	})
}
