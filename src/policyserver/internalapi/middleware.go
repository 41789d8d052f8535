package internalapi

import (
	"context"
	"fmt"
	"net/http"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/uuid"
)

// RequestIDHeader carries the request id across CF components.
const RequestIDHeader = "X-VCAP-Request-ID"

type loggerKey struct{}

// LogRequests is upstream's request log wrapper: each request gets a UUIDv4
// id (appended as "<incoming>::<new>" to an incoming X-VCAP-Request-ID),
// returned in X-VCAP-Request-ID before the handler runs, and a logger
// session "request_<id>" with method, request and request_guid that
// brackets the request with debug "serving" and "done".
func LogRequests(logger lager.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data := lager.Data{"method": r.Method, "request": r.URL.String()}
		session := "request"
		if id, err := uuid.NewRandom(); err == nil {
			reqID := id.String()
			if prev := r.Header.Get(RequestIDHeader); prev != "" {
				reqID = prev + "::" + reqID
			}
			w.Header().Set(RequestIDHeader, reqID)
			data["request_guid"] = reqID
			session = "request_" + reqID
		}
		reqLogger := logger.Session(session, data)
		reqLogger.Debug("serving")
		defer reqLogger.Debug("done")
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), loggerKey{}, reqLogger)))
	})
}

// requestLogger returns the request's session logger, or fallback outside
// LogRequests (handler tests).
func requestLogger(r *http.Request, fallback lager.Logger) lager.Logger {
	if l, ok := r.Context().Value(loggerKey{}).(lager.Logger); ok {
		return l
	}
	return fallback
}

// HSTS adds upstream's Strict-Transport-Security header to every response
// of h (routed responses only: 404/405 from the router carry none).
func HSTS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		h.ServeHTTP(w, r)
	})
}

// Counter is where error responses are counted (upstream's `http_error`).
type Counter interface {
	IncrementCounter(name string)
}

// errorResponder writes upstream's error responses: the description is
// logged at error level as the message, `http_error` is incremented and the
// body is `{"error": "<description>"}`. Every description the internal API
// uses is a fixed text without quotes, so upstream's unescaped formatting
// is also valid JSON.
type errorResponder struct {
	errors Counter
}

func (e errorResponder) write(w http.ResponseWriter, logger lager.Logger, status int, err error, description string) {
	logger.Error(description, err)
	if e.errors != nil {
		e.errors.IncrementCounter("http_error")
	}
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, `{"error": "%s"}`, description)
}
