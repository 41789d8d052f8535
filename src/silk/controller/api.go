package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/silk/lease"
)

// maxBodyBytes bounds request bodies; a lease is under 200 bytes.
const maxBodyBytes = 64 << 10

// Counter is where error responses are counted (upstream's `http_error`).
type Counter interface {
	IncrementCounter(name string)
}

// Route names used for upstream's <Name>RequestTime / <Name>RequestCount.
const (
	RouteLeasesIndex   = "LeasesIndex"
	RouteLeasesAcquire = "LeasesAcquire"
	RouteLeasesRenew   = "LeasesRenew"
	RouteLeasesRelease = "LeasesRelease"
)

// API serves the lease endpoints.
type API struct {
	leaser     *Leaser
	logger     lager.Logger
	errors     Counter
	indexCache indexCache
}

// NewAPI builds the handlers; errs counts error responses. indexTTL is how
// long a GET /leases body is reused (IndexCacheTTL; 0 disables the cache).
func NewAPI(logger lager.Logger, leaser *Leaser, errs Counter, indexTTL time.Duration) *API {
	return &API{leaser: leaser, logger: logger, errors: errs, indexCache: indexCache{ttl: indexTTL}}
}

// Routes returns each route's pattern, upstream metric name and handler.
func (a *API) Routes() []Route {
	return []Route{
		{"GET /leases", RouteLeasesIndex, http.HandlerFunc(a.index)},
		{"PUT /leases/acquire", RouteLeasesAcquire, http.HandlerFunc(a.acquire)},
		{"PUT /leases/renew", RouteLeasesRenew, http.HandlerFunc(a.renew)},
		{"PUT /leases/release", RouteLeasesRelease, http.HandlerFunc(a.release)},
	}
}

// Route is one endpoint of the API.
type Route struct {
	Pattern string
	Name    string
	Handler http.Handler
}

// Handler mounts the routes on a mux; wrap lets the caller add per-route
// middleware (metrics, logging). Unknown paths get 404, known paths with
// another method 405.
func (a *API) Handler(wrap func(name string, h http.Handler) http.Handler) http.Handler {
	mux := http.NewServeMux()
	for _, r := range a.Routes() {
		h := r.Handler
		if wrap != nil {
			h = wrap(r.Name, h)
		}
		mux.Handle(r.Pattern, h)
	}
	return mux
}

type acquireRequest struct {
	UnderlayIP      string `json:"underlay_ip"`
	SingleOverlayIP bool   `json:"single_overlay_ip"`
}

type releaseRequest struct {
	UnderlayIP string `json:"underlay_ip"`
}

type indexResponse struct {
	Leases []lease.Lease `json:"leases"`
}

func (a *API) index(w http.ResponseWriter, r *http.Request) {
	body, err := a.indexCache.get(r.Context(), func(ctx context.Context) ([]byte, error) {
		leases, err := a.leaser.Routable(ctx)
		if err != nil {
			return nil, err
		}
		return appendIndex(make([]byte, 0, 32+len(leases)*110), leases), nil
	})
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "all-routable-leases", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (a *API) acquire(w http.ResponseWriter, r *http.Request) {
	var req acquireRequest
	if !a.decode(w, r, &req) {
		return
	}
	got, err := a.leaser.Acquire(r.Context(), req.UnderlayIP, req.SingleOverlayIP)
	switch {
	case err == nil:
		a.indexCache.invalidate()
		a.reply(w, r, got)
	case errors.Is(err, ErrNoLeaseAvailable):
		a.fail(w, r, http.StatusConflict, "", err)
	case isInvalid(err):
		a.fail(w, r, http.StatusBadRequest, "", err)
	default:
		a.fail(w, r, http.StatusInternalServerError, "", err)
	}
}

func (a *API) renew(w http.ResponseWriter, r *http.Request) {
	var req lease.Lease
	if !a.decode(w, r, &req) {
		return
	}
	adopted, err := a.leaser.Renew(r.Context(), req)
	switch {
	case err == nil:
		if adopted {
			a.indexCache.invalidate()
		}
		a.reply(w, r, struct{}{})
	case isInvalid(err), errors.Is(err, ErrLeaseMismatch), errors.As(err, new(*adoptError)):
		// 409 tells the daemon the renewal can never succeed as sent.
		a.fail(w, r, http.StatusConflict, "renew-subnet-lease", err)
	default:
		a.fail(w, r, http.StatusInternalServerError, "renew-subnet-lease", err)
	}
}

func (a *API) release(w http.ResponseWriter, r *http.Request) {
	var req releaseRequest
	if !a.decode(w, r, &req) {
		return
	}
	err := a.leaser.Release(r.Context(), req.UnderlayIP)
	switch {
	case err == nil:
		a.indexCache.invalidate()
		a.reply(w, r, struct{}{})
	case isInvalid(err):
		a.fail(w, r, http.StatusBadRequest, "release lease", err)
	default:
		a.fail(w, r, http.StatusInternalServerError, "release lease", err)
	}
}

func isInvalid(err error) bool { return errors.As(err, new(*InvalidError)) }

func (a *API) decode(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "read-body", err)
		return false
	}
	if err := json.Unmarshal(body, v); err != nil {
		a.fail(w, r, http.StatusBadRequest, "unmarshal-request", err)
		return false
	}
	return true
}

func (a *API) reply(w http.ResponseWriter, r *http.Request, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		a.fail(w, r, http.StatusInternalServerError, "marshal-response", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// fail writes upstream's error body, `{"error": "<context>: <err>"}`.
func (a *API) fail(w http.ResponseWriter, r *http.Request, status int, context string, err error) {
	msg := err.Error()
	if context != "" {
		msg = context + ": " + msg
	}
	a.logger.Error("request-failed", err, lager.Data{"method": r.Method, "url": r.URL.String(), "status": status})
	if a.errors != nil {
		a.errors.IncrementCounter("http_error")
	}
	WriteError(w, status, msg)
}

// WriteError writes status and upstream's error body: the literal
// `{"error": "` + text + `"}`, with the text JSON-escaped (upstream did not
// escape, which broke the body for texts containing quotes).
func WriteError(w http.ResponseWriter, status int, text string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(text)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error": %s}`, bytes.TrimRight(buf.Bytes(), "\n"))
}

// HealthHandler serves upstream's plain `/health`: 200 with an empty body
// while the database answers, 500 otherwise.
func HealthHandler(logger lager.Logger, ping func(context.Context) error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if err := ping(r.Context()); err != nil {
			logger.Error("check-database-failed", err)
			WriteError(w, http.StatusInternalServerError, "check database failed")
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}
