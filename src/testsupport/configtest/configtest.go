// Package configtest writes the config files tests hand to LoadConfig and
// to the binaries, and reads back which keys a config error names.
package configtest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Write writes v to name in a fresh temporary directory and returns the
// path: as is when v is []byte or a string, else as JSON.
func Write(tb testing.TB, name string, v any) string {
	tb.Helper()
	return WriteFile(tb, filepath.Join(tb.TempDir(), name), v)
}

// WriteFile writes v to path, as Write does, and returns path.
func WriteFile(tb testing.TB, path string, v any) string {
	tb.Helper()
	var data []byte
	switch b := v.(type) {
	case []byte:
		data = b
	case string:
		data = []byte(b)
	default:
		data = JSON(tb, v)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// JSON is v marshalled, failing the test when it does not marshal.
func JSON(tb testing.TB, v any) []byte {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// ProblemKeys is the key each problem of a configfile error names, in
// order: "invalid config: a: ..." and "invalid config:\n  - a: ...\n  - b: ..."
// give [a] and [a b]. Any other error gives the text before its first
// colon; nil gives nil.
func ProblemKeys(err error) []string {
	if err == nil {
		return nil
	}
	var keys []string
	for _, line := range strings.Split(strings.TrimPrefix(err.Error(), "invalid config:"), "\n  - ") {
		if line = strings.TrimSpace(line); line != "" {
			keys = append(keys, strings.SplitN(line, ":", 2)[0])
		}
	}
	return keys
}
