package external

import (
	"net/http"
	"regexp"
	"strings"
)

// route is one endpoint: method, upstream path pattern (":version" matches
// any run of characters other than "/", as upstream's router does), and
// the fully wrapped handler.
type route struct {
	method  string
	path    string
	handler http.Handler
}

// router dispatches on exact paths the way upstream's router does, which
// Go's ServeMux does not quite: no path cleaning or redirects, HEAD is not
// implied by GET, unknown paths get 404 `404 page not found`, known paths
// with another method 405 `Method Not Allowed` with an Allow header listing
// the methods in route-table order.
type router struct {
	routes []route
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var allowed []string
	for _, route := range rt.routes {
		version, ok := matchPath(route.path, r.URL.Path)
		if !ok {
			continue
		}
		if route.method == r.Method {
			if strings.Contains(route.path, ":version") {
				r.SetPathValue("version", version)
			}
			route.handler.ServeHTTP(w, r)
			return
		}
		allowed = append(allowed, route.method)
	}
	if len(allowed) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	http.Error(w, "Method Not Allowed", http.StatusMethodNotAllowed)
}

// matchPath reports whether path matches pattern, whose one ":name"
// segment matches any run of non-"/" characters, and returns that run.
func matchPath(pattern, path string) (string, bool) {
	var value string
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
			value = path[:slash]
			pattern, path = pattern[end:], path[slash:]
			continue
		}
		if path == "" || path[0] != pattern[0] {
			return "", false
		}
		pattern, path = pattern[1:], path[1:]
	}
	return value, path == ""
}

// corsPattern is how upstream's CORS wrapper matches a route for the
// Access-Control-Allow-Methods list: ":word" becomes \w+, anchored, which
// differs from the router's own matching (a version such as "v1.0"
// routes but lists no methods).
func corsPattern(path string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`:\w+`).ReplaceAllLiteralString(path, `\w+`) + "$")
}
