package perftestsd_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/discovery/perftestsd"
	"github.com/netman-release/netman/src/mtls/mtlstest"
)

func TestCompareCPU(t *testing.T) {
	cases := []struct {
		name       string
		alone, all []float64
		want       perftestsd.CPUComparison
		wantErr    []string
	}{
		{
			name: "close", alone: []float64{1, 3, 2}, all: []float64{4, 2, 3, 5},
			want: perftestsd.CPUComparison{
				RouterOnly: perftestsd.CPUStats{Median: 2, Mean: 2, Samples: 3},
				Both:       perftestsd.CPUStats{Median: 3.5, Mean: 3.5, Samples: 4},
			},
		},
		{
			name: "exactly 30 points apart passes", alone: []float64{10}, all: []float64{40},
			want: perftestsd.CPUComparison{
				RouterOnly: perftestsd.CPUStats{Median: 10, Mean: 10, Samples: 1},
				Both:       perftestsd.CPUStats{Median: 40, Mean: 40, Samples: 1},
			},
		},
		{
			name: "median and mean too far", alone: []float64{5, 5, 5}, all: []float64{50, 60, 70},
			want: perftestsd.CPUComparison{
				RouterOnly: perftestsd.CPUStats{Median: 5, Mean: 5, Samples: 3},
				Both:       perftestsd.CPUStats{Median: 60, Mean: 60, Samples: 3},
			},
			wantErr: []string{
				"NATS CPU median is 60.0% with service-discovery.register and 5.0% with router.register alone: more than 30 points apart",
				"NATS CPU mean is 60.0% with service-discovery.register and 5.0% with router.register alone: more than 30 points apart",
			},
		},
		{
			name: "only the mean too far", alone: []float64{10, 10, 10}, all: []float64{10, 10, 110},
			want: perftestsd.CPUComparison{
				RouterOnly: perftestsd.CPUStats{Median: 10, Mean: 10, Samples: 3},
				Both:       perftestsd.CPUStats{Median: 10, Mean: 130.0 / 3, Samples: 3},
			},
			wantErr: []string{"NATS CPU mean is 43.3% with service-discovery.register and 10.0% with router.register alone"},
		},
		{
			name: "lower with service discovery counts too", alone: []float64{80}, all: []float64{20},
			want: perftestsd.CPUComparison{
				RouterOnly: perftestsd.CPUStats{Median: 80, Mean: 80, Samples: 1},
				Both:       perftestsd.CPUStats{Median: 20, Mean: 20, Samples: 1},
			},
			wantErr: []string{"median is 20.0%", "mean is 20.0%"},
		},
		{
			name: "no samples", alone: nil, all: []float64{1},
			wantErr: []string{"router.register alone: no CPU samples"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := perftestsd.CompareCPU(c.alone, c.all, perftestsd.CPUTolerance)
			checkErr(t, err, c.wantErr)
			if c.want != (perftestsd.CPUComparison{}) {
				if diff := gocmp.Diff(c.want, got); diff != "" {
					t.Errorf("comparison (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// checkErr: err contains every one of want, or is nil when want is empty.
func checkErr(t *testing.T, err error, want []string) {
	t.Helper()
	if len(want) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not contain %q", err, w)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	valid := `{"nats_url": "10.0.1.50, 10.0.1.51", "nats_username": "nats", "nats_password": "secret",
		"nats_monitoring_port": 8222, "nats_port": 4222, "num_messages": 10, "num_publishers": 10}`
	cases := []struct {
		name, json string
		want       perftestsd.Config
		wantErr    []string
	}{
		{
			name: "upstream's keys", json: valid,
			want: perftestsd.Config{NatsURL: "10.0.1.50, 10.0.1.51", NatsUsername: "nats", NatsPassword: "secret",
				NatsMonitoringPort: 8222, NatsPort: 4222, NumMessages: 10, NumPublishers: 10},
		},
		{name: "not JSON", json: `{"nats_url": `, wantErr: []string{"parsing config"}},
		{name: "wrong type", json: `{"nats_port": "4222"}`, wantErr: []string{"parsing config", "nats_port"}},
		{
			name: "everything missing", json: `{}`,
			wantErr: []string{
				"nats_url: no NATS host", "nats_port must be a port between 1 and 65535 (got 0)",
				"nats_monitoring_port must be a port between 1 and 65535 (got 0)",
				"num_messages must be at least 1 (got 0)", "num_publishers must be at least 1 (got 0)",
			},
		},
		{
			name:    "a URL instead of hosts",
			json:    `{"nats_url": "nats://10.0.1.50:4222", "nats_monitoring_port": 8222, "nats_port": 4222, "num_messages": 1, "num_publishers": 1}`,
			wantErr: []string{`nats_url: "nats://10.0.1.50:4222" is not a host name or address`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.json")
			if err := os.WriteFile(path, []byte(c.json), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := perftestsd.LoadConfig(path)
			checkErr(t, err, c.wantErr)
			if err == nil {
				if diff := gocmp.Diff(c.want, got); diff != "" {
					t.Errorf("config (-want +got):\n%s", diff)
				}
				if diff := gocmp.Diff([]string{"10.0.1.50", "10.0.1.51"}, got.Hosts()); diff != "" {
					t.Errorf("hosts (-want +got):\n%s", diff)
				}
			}
		})
	}
	if _, err := perftestsd.LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil || !strings.Contains(err.Error(), "reading config") {
		t.Errorf("missing file: %v", err)
	}
}

// quick keeps a run short: one sample, a short CPU window. The in-process
// NATS server's /varz CPU is the whole test process's (controller, race
// detector), so the end-to-end tests only check that the comparison runs
// and is reported; TestCompareCPU checks the comparison.
func quick(out *bytes.Buffer) perftestsd.Options {
	return perftestsd.Options{
		Out: out, Samples: 1, CPUWindow: 300 * time.Millisecond, CPUInterval: 50 * time.Millisecond,
		SettleTimeout: 5 * time.Second, CPUTolerance: 1e6,
	}
}

func startNATS(t *testing.T) (*discoverytest.NATS, perftestsd.Config) {
	t.Helper()
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{User: "nats", Password: "secret", Monitoring: true})
	return n, perftestsd.Config{
		NatsURL: n.Host(), NatsUsername: "nats", NatsPassword: "secret", NatsPort: n.Port(),
		NatsMonitoringPort: n.MonitorPort(), NumMessages: 10, NumPublishers: 3,
	}
}

// subscriber is a plain connection subscribed to subject that counts what
// it receives.
type subscriber struct {
	mu sync.Mutex
	n  int
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func subscribe(t *testing.T, n *discoverytest.NATS, name, subject string, max int) *subscriber {
	t.Helper()
	nc, err := nats.Connect(n.URL(), nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	s := &subscriber{}
	sub, err := nc.Subscribe(subject, func(*nats.Msg) {
		s.mu.Lock()
		s.n++
		s.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	if max > 0 {
		if err := sub.AutoUnsubscribe(max); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// TestRunPasses runs both checks against an in-process NATS server with a
// service-discovery-controller and a plain wildcard subscriber.
func TestRunPasses(t *testing.T) {
	n, cfg := startNATS(t)
	files := mtlstest.NewTestFiles(t)
	discoverytest.StartController(t, discoverytest.ControllerConfig(t, files, n))
	plain := subscribe(t, n, "plain", "service-discovery.*", 0)

	var out bytes.Buffer
	if err := perftestsd.Run(context.Background(), cfg, quick(&out)); err != nil {
		t.Fatalf("Run: %v\n%s", err, out.String())
	}
	report := out.String()
	t.Log(report)
	for _, want := range []string{
		"published 10 messages on service-discovery.register from 3 publishers",
		"received 10 of 10 messages",
		"published 10 messages on router.register from 3 publishers",
		"CPU median",
		"PASS\n",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if got := strings.Count(report, "  ok   "); got != 2 {
		t.Errorf("%d subscribers reported ok, want 2 (the controller and the plain one)", got)
	}
	if !strings.Contains(report, "  ok   plain ") {
		t.Error("the plain subscriber is not reported by its name")
	}
	// 10 in the delivery sample, 10 in the CPU check's second phase.
	if got := plain.count(); got != 20 {
		t.Errorf("the plain subscriber received %d messages, want 20", got)
	}
}

func TestRunFails(t *testing.T) {
	t.Run("a subscriber unsubscribes mid-run", func(t *testing.T) {
		n, cfg := startNATS(t)
		subscribe(t, n, "complete", perftestsd.SubjectRegister, 0)
		subscribe(t, n, "quitter", perftestsd.SubjectRegister, 4)
		var out bytes.Buffer
		err := perftestsd.Run(context.Background(), cfg, quick(&out))
		checkErr(t, err, []string{"service-discovery.register subscribers: sample 1: quitter 127.0.0.1:",
			"unsubscribed from service-discovery.register during the sample after receiving 4 of 10 messages"})
		if strings.Contains(err.Error(), "complete") || strings.Contains(err.Error(), "NATS CPU") {
			t.Errorf("error blames more than the quitter: %v", err)
		}
		if !strings.Contains(out.String(), "  ok   complete ") || !strings.HasSuffix(out.String(), "FAIL\n") {
			t.Errorf("report:\n%s", out.String())
		}
	})
	t.Run("a slow consumer", func(t *testing.T) {
		n := discoverytest.StartNATS(t, discoverytest.NATSConfig{User: "nats", Password: "secret", Monitoring: true,
			MaxPending: 64 << 10, WriteDeadline: 200 * time.Millisecond})
		subscribe(t, n, "complete", perftestsd.SubjectRegister, 0)
		stalledSubscriber(t, n, perftestsd.SubjectRegister)
		cfg := perftestsd.Config{
			NatsURL: n.Host(), NatsUsername: "nats", NatsPassword: "secret", NatsPort: n.Port(),
			NatsMonitoringPort: n.MonitorPort(), NumMessages: 10000, NumPublishers: 4,
		}
		var out bytes.Buffer
		err := perftestsd.Run(context.Background(), cfg, quick(&out))
		t.Log(out.String())
		checkErr(t, err, []string{"stalled 127.0.0.1:", "disconnected during the sample", "new slow consumers during the sample"})
		if !strings.Contains(out.String(), "  ok   complete ") {
			t.Errorf("report:\n%s", out.String())
		}
	})
	t.Run("no subscriber", func(t *testing.T) {
		_, cfg := startNATS(t)
		var out bytes.Buffer
		err := perftestsd.Run(context.Background(), cfg, quick(&out))
		checkErr(t, err, []string{"no connection subscribes to service-discovery.register on 127.0.0.1: is service-discovery-controller running?"})
	})
	t.Run("monitoring port closed", func(t *testing.T) {
		n, cfg := startNATS(t)
		subscribe(t, n, "complete", perftestsd.SubjectRegister, 0)
		cfg.NatsMonitoringPort = n.Port() // speaks NATS, not HTTP
		err := perftestsd.Run(context.Background(), cfg, quick(&bytes.Buffer{}))
		checkErr(t, err, []string{"NATS monitoring endpoint"})
	})
	t.Run("wrong password", func(t *testing.T) {
		n, cfg := startNATS(t)
		subscribe(t, n, "complete", perftestsd.SubjectRegister, 0)
		cfg.NatsPassword = "wrong"
		err := perftestsd.Run(context.Background(), cfg, quick(&bytes.Buffer{}))
		checkErr(t, err, []string{"connecting to NATS 127.0.0.1", "Authorization Violation"})
	})
	t.Run("invalid config", func(t *testing.T) {
		err := perftestsd.Run(context.Background(), perftestsd.Config{}, quick(&bytes.Buffer{}))
		checkErr(t, err, []string{"nats_url: no NATS host"})
	})
}

// TestExampleConfig loads config/performance-test-sd.json, what the job's
// template renders for a two-VM NATS cluster.
func TestExampleConfig(t *testing.T) {
	got, err := perftestsd.LoadConfig(filepath.Join("..", "..", "..", "config", "performance-test-sd.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := perftestsd.Config{NatsURL: "10.0.1.50,10.0.1.51", NatsUsername: "nats", NatsPassword: "nats-secret",
		NatsPort: 4222, NatsMonitoringPort: 8222, NumMessages: 10, NumPublishers: 10}
	if diff := gocmp.Diff(want, got); diff != "" {
		t.Errorf("example config (-want +got):\n%s", diff)
	}
}

// stalledSubscriber subscribes to subject over a raw connection with a
// tiny receive buffer and then never reads: the server cuts it off as a
// slow consumer once its pending bytes pass MaxPending or a write to it
// takes longer than WriteDeadline.
func stalledSubscriber(t *testing.T, n *discoverytest.NATS, subject string) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", net.JoinHostPort(n.Host(), strconv.Itoa(n.Port())))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	user, pass := n.Credentials()
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil { // INFO
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"stalled\",\"user\":%q,\"pass\":%q}\r\nSUB %s 1\r\nPING\r\n", user, pass, subject)
	line, err := r.ReadString('\n')
	if err != nil || line != "PONG\r\n" {
		t.Fatalf("subscribing: %q, %v", line, err)
	}
}
