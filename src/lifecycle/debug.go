package lifecycle

import (
	"fmt"
	"io"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"strings"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/logging"
	"github.com/netman-release/netman/src/metrics"
)

// maxDebugBody bounds request bodies on the debug server; every valid body
// is a word or a number.
const maxDebugBody = 1 << 10

// DebugHandler serves upstream's debug server routes:
//
//   - /log-level: POST or PUT a level (debug, info, error, fatal in any case,
//     or 0-3) to set sink's level; GET returns the current level name.
//     Monit and post-start probe it with GET.
//   - /debug/pprof/ with cmdline, profile, symbol and trace.
//   - /block-profile-rate and /mutex-profile-fraction: POST or PUT an
//     integer; values <= 0 switch the profile off.
//   - /metrics: reg in the Prometheus text format, when reg is not nil.
//
// Daemons with extra debug routes (the agent's /iptables-c2c-logging) mount
// this under "/" of their own mux.
func DebugHandler(sink *lager.ReconfigurableSink, reg *metrics.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	mux.HandleFunc("GET /log-level", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, sink.GetMinLevel().String())
	})
	setLevel := func(w http.ResponseWriter, r *http.Request) {
		body, ok := readDebugBody(w, r)
		if !ok {
			return
		}
		level, err := logging.ParseLevel(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		sink.SetMinLevel(level)
	}
	mux.HandleFunc("POST /log-level", setLevel)
	mux.HandleFunc("PUT /log-level", setLevel)

	profileRate := func(what string, set func(int)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			body, ok := readDebugBody(w, r)
			if !ok {
				return
			}
			rate, err := strconv.Atoi(strings.TrimSpace(body))
			if err != nil {
				http.Error(w, fmt.Sprintf("invalid %s %q: want an integer", what, body), http.StatusBadRequest)
				return
			}
			set(max(rate, 0))
		}
	}
	blockRate := profileRate("block profile rate", runtime.SetBlockProfileRate)
	mutexFraction := profileRate("mutex profile fraction", func(n int) { runtime.SetMutexProfileFraction(n) })
	mux.HandleFunc("POST /block-profile-rate", blockRate)
	mux.HandleFunc("PUT /block-profile-rate", blockRate)
	mux.HandleFunc("POST /mutex-profile-fraction", mutexFraction)
	mux.HandleFunc("PUT /mutex-profile-fraction", mutexFraction)

	if reg != nil {
		mux.Handle("/metrics", reg.Handler())
	}
	return mux
}

func readDebugBody(w http.ResponseWriter, r *http.Request) (string, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDebugBody))
	if err != nil {
		http.Error(w, fmt.Sprintf("reading request body: %v", err), http.StatusBadRequest)
		return "", false
	}
	return string(body), true
}
