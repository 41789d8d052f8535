package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/discovery/perftestsd"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "performance-test-sd", main)) }

func TestExitCodes(t *testing.T) {
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{Monitoring: true})
	// Nothing listens on the monitoring port: both checks fail at once.
	closed := perftestsd.Config{NatsURL: n.Host(), NatsPort: n.Port(), NatsMonitoringPort: ports.Free(t, n.Host()), NumMessages: 1, NumPublishers: 1}
	cases := []struct {
		name       string
		args       []string
		env        string
		wantStderr []string
	}{
		{
			name: "bad config", args: []string{"-config", configtest.Write(t, "config.json", perftestsd.Config{NatsURL: "nats"})},
			wantStderr: []string{"performance-test-sd: invalid config", "nats_port must be a port between 1 and 65535 (got 0)"},
		},
		{
			name: "missing config from $CONFIG", env: filepath.Join(t.TempDir(), "missing.json"),
			wantStderr: []string{"performance-test-sd: reading config"},
		},
		{
			name: "failing run", args: []string{"-config", configtest.Write(t, "config.json", closed)},
			wantStderr: []string{"performance-test-sd: FAIL: service-discovery.register subscribers: sample 1: NATS monitoring endpoint",
				"NATS CPU: sample 1, router.register alone: NATS monitoring endpoint", "connection refused"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := maintest.Command(c.args...)
			if c.env != "" {
				cmd.Env = append(cmd.Env, "CONFIG="+c.env)
			}
			p := discoverytest.StartProcess(t, cmd)
			if code := p.Wait(t, 20*time.Second); code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, p.Stderr)
			}
			for _, want := range c.wantStderr {
				if !strings.Contains(p.Stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, p.Stderr)
				}
			}
		})
	}
}
