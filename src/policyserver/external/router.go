package external

import "regexp"

// corsPattern is how upstream's CORS wrapper matches a route for the
// Access-Control-Allow-Methods list: ":word" becomes \w+, anchored, which
// differs from the router's own matching (a version such as "v1.0"
// routes but lists no methods).
func corsPattern(path string) *regexp.Regexp {
	return regexp.MustCompile("^" + regexp.MustCompile(`:\w+`).ReplaceAllLiteralString(path, `\w+`) + "$")
}
