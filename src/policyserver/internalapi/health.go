package internalapi

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/policyserver/router"
)

// Health-server metric names (upstream's).
const (
	RouteUptime = "Uptime"
	RouteHealth = "Health"
)

// HealthRoutes are the plain-HTTP health server's routes: GET / answers
// upstream's uptime text without touching the database; GET /health pings
// the database and answers 200 with an empty body, or 500
// `{"error": "check database failed"}`.
func HealthRoutes(logger lager.Logger, errs Counter, start time.Time, ping func(context.Context) error) []router.Route {
	e := errorResponder{errors: errs}
	uptime := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = fmt.Fprintf(w, "Network policy server, up for %v\n", time.Since(start))
	})
	health := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ping(r.Context()); err != nil {
			e.write(w, requestLogger(r, logger), http.StatusInternalServerError, err, "check database failed")
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return []router.Route{
		{Method: http.MethodGet, Path: "/", Name: RouteUptime, Handler: uptime},
		{Method: http.MethodGet, Path: "/health", Name: RouteHealth, Handler: health},
	}
}
