package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCountContainers(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	tests := []struct {
		name, path string
		want       int
		err        string
	}{
		{name: "missing file", path: filepath.Join(dir, "absent.json")},
		{name: "empty file", path: write("empty.json", "")},
		{name: "blank file", path: write("blank.json", "\n")},
		{name: "empty object", path: write("none.json", "{}\n")},
		{name: "two containers", path: write("two.json", `{
			"ns-1": {"handle": "ns-1", "ip": "10.255.17.2", "metadata": {}},
			"ns-2": {"handle": "ns-2", "ip": "10.255.17.3", "metadata": null}
		}`), want: 2},
		{name: "garbage", path: write("bad.json", "some-bad-contents"), err: "decoding file"},
		{name: "not an object", path: write("list.json", "[1]"), err: "decoding file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := countContainers(tt.path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || n != tt.want {
				t.Fatalf("countContainers = %d, %v; want %d", n, err, tt.want)
			}
		})
	}
}
