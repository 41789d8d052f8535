package internalapi

import (
	"net/http"
	"strings"
)

// Route is one endpoint: method, upstream path pattern (":version" matches
// any run of characters other than "/", even an empty one, as upstream's
// router does), upstream metric name and handler.
type Route struct {
	Method  string
	Path    string
	Name    string
	Handler http.Handler
}

// Router dispatches on exact paths the way upstream's rata/pat router does,
// which Go's ServeMux does not quite: no path cleaning or redirects, HEAD is
// not implied by GET, unknown paths get 404 `404 page not found`, known
// paths with another method 405 `Method Not Allowed` and an Allow header.
type Router struct {
	routes []Route
}

// NewRouter returns a router over routes, tried in order.
func NewRouter(routes ...Route) *Router {
	return &Router{routes: routes}
}

func (rt *Router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, route := range rt.routes {
		if !matchPath(route.Path, r.URL.Path) {
			continue
		}
		if route.Method == r.Method {
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

// matchPath reports whether path matches pattern, whose ":name" segments
// match any run of non-"/" characters.
func matchPath(pattern, path string) bool {
	for pattern != "" {
		if pattern[0] == ':' {
			end := strings.IndexByte(pattern, '/')
			if end < 0 {
				return !strings.Contains(path, "/")
			}
			slash := strings.IndexByte(path, '/')
			if slash < 0 {
				return false
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
