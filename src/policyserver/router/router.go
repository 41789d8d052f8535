// Package router dispatches the policy servers' requests (external,
// internal and health) the way upstream's router does, which Go's ServeMux
// does not quite: paths match exactly (no cleaning or redirects), HEAD is not
// implied by GET, an unknown path gets 404 `404 page not found`, and a known
// path asked with another method 405 `Method Not Allowed` with an Allow
// header listing that path's methods in route-table order.
package router

import (
	"net/http"
	"strings"
)

// Route is one endpoint of a route table.
type Route struct {
	Method string
	// Path is upstream's pattern: each ":name" segment matches any run of
	// characters other than "/", even an empty one, and reaches the
	// handler as r.PathValue(name).
	Path    string
	Name    string // upstream's metric name (<Name>RequestTime)
	Handler http.Handler
}

// Router is a route table, tried in order.
type Router []Route

func (rt Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, route := range rt {
		if !match(route.Path, r.URL.Path, nil) {
			continue
		}
		if route.Method == r.Method {
			match(route.Path, r.URL.Path, r)
			route.Handler.ServeHTTP(w, r)
			return
		}
		allowed = append(allowed, route.Method)
	}
	if len(allowed) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
}

// match reports whether path matches pattern; with r, it also sets r's
// path value of every ":name" segment.
func match(pattern, path string, r *http.Request) bool {
	for pattern != "" {
		if pattern[0] == ':' {
			end := strings.IndexByte(pattern, '/')
			if end < 0 {
				end = len(pattern)
			}
			slash := strings.IndexByte(path, '/')
			if slash < 0 {
				slash = len(path)
			}
			if r != nil {
				r.SetPathValue(pattern[1:end], path[:slash])
			}
			pattern, path = pattern[end:], path[slash:]
			continue
		}
		if path == "" || path[0] != pattern[0] {
			return false
		}
		pattern, path = pattern[1:], path[1:]
	}
	return path == ""
}
