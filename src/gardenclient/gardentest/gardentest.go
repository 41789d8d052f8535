// Package gardentest is a stateful stand-in for Garden's HTTP API on a unix
// socket: containers with properties that tests create, change and
// destroy, served with Garden's routes, bodies and error documents.
package gardentest

import (
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Server is a fake Garden.
type Server struct {
	// Socket is the unix socket path the server listens on.
	Socket string

	mu         sync.Mutex
	containers map[string]map[string]string
	// down, when not "", makes every request fail with that error type.
	down     string
	requests map[string]int
}

// New starts a server on a socket in a temporary directory; it stops when
// the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		Socket:     filepath.Join(t.TempDir(), "garden.sock"),
		containers: map[string]map[string]string{},
		requests:   map[string]int{},
	}
	l, err := net.Listen("unix", s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// Create adds a container (or replaces its properties).
func (s *Server) Create(handle string, props map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := map[string]string{}
	for k, v := range props {
		p[k] = v
	}
	s.containers[handle] = p
}

// SetProperty sets one property of an existing container, as Garden's
// PUT /containers/:handle/properties/:key does.
func (s *Server) SetProperty(handle, key, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.containers[handle]; ok {
		p[key] = value
	}
}

// Destroy removes a container.
func (s *Server) Destroy(handle string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.containers, handle)
}

// Fail makes every request fail with errType (e.g.
// gardenclient.TypeUnrecoverable, or "" for a plain error) until Recover.
func (s *Server) Fail(errType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if errType == "" {
		errType = "plain"
	}
	s.down = errType
}

// Recover ends Fail.
func (s *Server) Recover() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = ""
}

// Requests returns how many requests each route ("GET /ping", "GET
// /containers", "GET /containers/:handle/properties") has served.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.requests {
		out[k] = v
	}
	return out
}

// ServeHTTP routes Garden's paths.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	route := r.Method + " /" + strings.Join(parts, "/")
	if len(parts) == 3 && parts[0] == "containers" && parts[2] == "properties" {
		route = r.Method + " /containers/:handle/properties"
	}
	s.requests[route]++
	if s.down != "" {
		typ := s.down
		if typ == "plain" {
			typ = ""
		}
		writeError(w, http.StatusInternalServerError, typ, "garden is down", "")
		return
	}
	switch route {
	case "GET /ping":
		writeJSON(w, struct{}{})
	case "GET /containers":
		handles := []string{}
		for h, props := range s.containers {
			if matches(props, r.URL.Query()) {
				handles = append(handles, h)
			}
		}
		writeJSON(w, struct{ Handles []string }{handles})
	case "GET /containers/:handle/properties":
		props, ok := s.containers[parts[1]]
		if !ok {
			writeError(w, http.StatusNotFound, "ContainerNotFoundError", "unknown handle: "+parts[1], parts[1])
			return
		}
		writeJSON(w, props)
	default:
		http.NotFound(w, r)
	}
}

func matches(props map[string]string, filter map[string][]string) bool {
	for k, v := range filter {
		if len(v) == 0 || props[k] != v[0] {
			return false
		}
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes Garden's error document.
func writeError(w http.ResponseWriter, status int, typ, msg, handle string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(struct {
		Type, Message, Handle, ProcessID string
	}{typ, msg, handle, ""})
}
