package external

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"

	"github.com/netman-release/netman/src/policyserver/auth"
)

// RequestIDHeader carries the request id across CF components.
const RequestIDHeader = "X-VCAP-Request-ID"

// MaxBodyBytes is upstream's limit on request bodies of authenticated
// routes (10 MiB); a larger body fails as an unreadable one (400).
const MaxBodyBytes = 10 << 20

type ctxKey int

const (
	loggerKey ctxKey = iota
	tokenKey
)

// Metrics is where the API reports: per-route timings and counts, and the
// http_error counter. *metrics.Sender satisfies it.
type Metrics interface {
	SendDuration(name string, d time.Duration)
	IncrementCounter(name string)
}

// securityHeaders adds the headers upstream's wrappers put on every routed
// response (OPTIONS included): frame, XSS and sniffing protection, HSTS
// when serving TLS, and CORS.
func (a *API) securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		if a.opts.EnableTLS {
			hdr.Set("Strict-Transport-Security", "max-age=31536000")
		}
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("X-XSS-Protection", "1; mode=block")
		if r.Method == http.MethodOptions {
			var methods []string
			for _, c := range a.cors {
				if c.pattern.MatchString(r.URL.Path) {
					methods = append(methods, c.method)
				}
			}
			hdr.Set("Access-Control-Allow-Methods", strings.Join(methods, ","))
			hdr.Set("Access-Control-Allow-Headers", "authorization")
		}
		if origins := r.Header.Values("Origin"); len(origins) > 0 {
			for _, allowed := range a.opts.AllowedCORSDomains {
				if allowed == origins[0] || allowed == "*" {
					hdr.Set("Access-Control-Allow-Origin", allowed)
					break
				}
			}
		}
		hdr.Set("X-Frame-Options", "deny")
		hdr.Set("Content-Security-Policy", "frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

// timed sends "<name>RequestTime" (ms) and increments "<name>RequestCount"
// once h has served the request.
func (a *API) timed(name string, h http.Handler) http.Handler {
	timeMetric, countMetric := name+"RequestTime", name+"RequestCount"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		h.ServeHTTP(w, r)
		a.opts.Metrics.SendDuration(timeMetric, time.Since(start))
		a.opts.Metrics.IncrementCounter(countMetric)
	})
}

// logRequests is upstream's request log wrapper: each request gets a UUIDv4
// id (appended as "<incoming>::<new>" to an incoming X-VCAP-Request-ID),
// returned in X-VCAP-Request-ID before the handler runs, and a logger
// session "request_<id>" that brackets the request with debug "serving"
// and "done".
func (a *API) logRequests(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqID := uuid.NewString()
		if prev := r.Header.Get(RequestIDHeader); prev != "" {
			reqID = prev + "::" + reqID
		}
		w.Header().Set(RequestIDHeader, reqID)
		logger := a.logger.Session("request_"+reqID, lager.Data{
			"method":       r.Method,
			"request":      r.URL.String(),
			"request_guid": reqID,
		})
		logger.Debug("serving")
		defer logger.Debug("done")
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), loggerKey, logger)))
	})
}

func (a *API) requestLogger(r *http.Request) lager.Logger {
	if l, ok := r.Context().Value(loggerKey).(lager.Logger); ok {
		return l
	}
	return a.logger
}

// checkVersion answers 406 for a :version other than v0 and v1, before
// any authentication, as upstream.
func (a *API) checkVersion(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch v := r.PathValue("version"); v {
		case "v0", "v1":
			h.ServeHTTP(w, r)
		default:
			err := fmt.Errorf("api version '%s' not supported", v)
			a.fail(w, r, a.requestLogger(r), http.StatusNotAcceptable, err, err.Error())
		}
	})
}

// Scopes each kind of authenticated route accepts.
var (
	adminScopes = []string{auth.ScopeAdmin}
	writeScopes = []string{auth.ScopeAdmin, auth.ScopeWrite}
)

// authenticate verifies the bearer token of the first Authorization header
// (a leading "Bearer " or "bearer " stripped, as upstream) and, when
// checkScopes, that it holds one of scopes; it then limits the body to
// MaxBodyBytes and hands the token to h in the request context.
func (a *API) authenticate(scopes []string, checkScopes bool, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		logger := a.requestLogger(r).Session("authentication")
		values := r.Header.Values("Authorization")
		if len(values) == 0 {
			a.fail(w, r, logger, http.StatusUnauthorized, fmt.Errorf("no auth header"), "missing authorization header")
			return
		}
		token := strings.TrimPrefix(values[0], "Bearer ")
		token = strings.TrimPrefix(token, "bearer ")
		tok, err := a.opts.Verifier.CheckToken(r.Context(), token)
		if err != nil {
			a.fail(w, r, logger, http.StatusUnauthorized, err, "failed to verify token with uaa")
			return
		}
		if checkScopes && !tok.HasAnyScope(scopes) {
			err := fmt.Errorf("provided scopes %s do not include allowed scopes %s", tok.Scope, scopes)
			a.fail(w, r, logger, http.StatusForbidden, err, err.Error())
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBodyBytes)
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey, tok)))
	})
}

func tokenOf(r *http.Request) auth.Token {
	tok, _ := r.Context().Value(tokenKey).(auth.Token)
	return tok
}

// fail writes upstream's error response: description logged at error level
// as the message with err in data.error, http_error incremented, 401s
// carrying WWW-Authenticate: Bearer, and the body {"error": "<description>"}
// (JSON-escaped: upstream's unescaped text broke the JSON for descriptions
// holding quotes; ordinary texts are byte-identical).
func (a *API) fail(w http.ResponseWriter, _ *http.Request, logger lager.Logger, status int, err error, description string) {
	logger.Error(description, err)
	a.opts.Metrics.IncrementCounter("http_error")
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeError(w, status, description)
}

func writeError(w http.ResponseWriter, status int, description string) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(description) // a string always encodes
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error": %s}`, bytes.TrimRight(buf.Bytes(), "\n"))
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}
