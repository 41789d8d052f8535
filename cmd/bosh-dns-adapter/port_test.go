package main

import (
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

// Upstream's test "when configured with an invalid port": "-1" passes its
// config validation and fails at listen, exit 1. netman fails the same way
// for every port outside 1-65535 (0 included, which upstream would bind to
// a random port); a missing port is a config error (exit 2), as upstream.
func TestInvalidPortExits1(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	for _, tt := range []struct {
		port     string
		wantExit int
		want     string
	}{
		{"-1", 1, "Address (127.0.0.1:-1) not available"},
		{"0", 1, "Address (127.0.0.1:0) not available"},
		{"65536", 1, "Address (127.0.0.1:65536) not available"},
		{"eighty", 1, "Address (127.0.0.1:eighty) not available"},
		{"", 2, "Could not parse config file"},
	} {
		t.Run(tt.port, func(t *testing.T) {
			cfg := discoverytest.AdapterConfig(t, files, "8054")
			cfg.Port = tt.port
			p := discoverytest.StartProcess(t, maintest.Command("-c", configtest.Write(t, "config.json", cfg)))
			if code := p.Wait(t, 10*time.Second); code != tt.wantExit {
				t.Fatalf("exit %d, want %d; stdout:\n%s", code, tt.wantExit, p.Stdout)
			}
			if !strings.Contains(p.Stdout.String(), tt.want) {
				t.Errorf("stdout lacks %q:\n%s", tt.want, p.Stdout)
			}
		})
	}
}
