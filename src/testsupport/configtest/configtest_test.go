package configtest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWrite(t *testing.T) {
	for _, tc := range []struct {
		v    any
		want string
	}{
		{map[string]any{"port": 4003}, `{"port":4003}`},
		{[]byte(`{"raw": true}`), `{"raw": true}`},
		{"log_level: debug\n", "log_level: debug\n"},
	} {
		path := Write(t, "c.json", tc.v)
		if filepath.Base(path) != "c.json" {
			t.Errorf("path = %s, want a c.json", path)
		}
		if got, err := os.ReadFile(path); err != nil || string(got) != tc.want {
			t.Errorf("wrote %q (%v), want %q", got, err, tc.want)
		}
	}
}

func TestProblemKeys(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []string
	}{
		{nil, nil},
		{errors.New("invalid config: port: must be a port"), []string{"port"}},
		{errors.New("invalid config:\n  - ca_cert_file: missing required value\n  - port: must be a port"), []string{"ca_cert_file", "port"}},
		{errors.New("reading config: open x: no such file"), []string{"reading config"}},
	} {
		if diff := cmp.Diff(tc.want, ProblemKeys(tc.err)); diff != "" {
			t.Errorf("ProblemKeys(%v) (-want +got):\n%s", tc.err, diff)
		}
	}
}
