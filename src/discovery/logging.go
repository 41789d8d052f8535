package discovery

import (
	"io"
	"net/http"

	"code.cloudfoundry.org/lager/v3"
)

// NewLogger builds a discovery daemon's logger as upstream's lagerflags
// default does: named after the component alone (no "cfnetworking." prefix,
// so lines read "service-discovery-controller.server-started"), JSON with
// RFC3339 timestamps to w, info level behind the returned reconfigurable
// sink that the log-level server adjusts.
func NewLogger(component string, w io.Writer) (lager.Logger, *lager.ReconfigurableSink) {
	sink := lager.NewReconfigurableSink(lager.NewPrettySink(w, lager.DEBUG), lager.INFO)
	logger := lager.NewLogger(component)
	logger.RegisterSink(sink)
	return logger, sink
}

// LogLevelHandler is upstream's log-level server (cf-networking-helpers
// lagerlevel): a request to /log-level whose body is exactly "debug" or
// "info" sets sink's level and answers 204; any other body answers 400.
// Unlike the debug servers of the other daemons it accepts no other levels,
// as upstream. It also serves the metrics registry's Prometheus text at
// /metrics when metrics is not nil: the discovery daemons have no other debug
// server.
func LogLevelHandler(logger lager.Logger, sink *lager.ReconfigurableSink, metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/log-level", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1024))
		if err != nil {
			logger.Info("Unable to read request body")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch level := string(body); level {
		case "info":
			sink.SetMinLevel(lager.INFO)
			logger.Info("Log level set to INFO")
		case "debug":
			sink.SetMinLevel(lager.DEBUG)
			logger.Info("Log level set to DEBUG")
		default:
			logger.Info("Invalid log level requested: `" + level + "`. Skipping.")
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	return mux
}
