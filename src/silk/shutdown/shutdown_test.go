package shutdown_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/shutdown"
)

// fakeDaemon is a process standing in for silk-daemon, with its health
// port served while the process lives.
type fakeDaemon struct {
	pidFile string
	url     string
	exited  chan struct{}
}

func startDaemon(t *testing.T, ignoreTerm bool) *fakeDaemon {
	t.Helper()
	script := "echo ready; exec sleep 60"
	if ignoreTerm {
		script = `trap "" TERM; echo ready; sleep 60`
	}
	cmd := exec.Command("sh", "-c", script)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Signals are only meant for it once it has set them up.
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		t.Fatalf("fake daemon: %q %v", line, err)
	}
	d := &fakeDaemon{pidFile: filepath.Join(t.TempDir(), "silk-daemon.pid"), exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-d.exited })
	if err := os.WriteFile(d.pidFile, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"overlay_subnet":"10.255.7.0/24","mtu":1450}`))
	})}
	go func() { _ = srv.Serve(l) }()
	go func() { <-d.exited; _ = srv.Close() }() // the port closes with the process
	t.Cleanup(func() { _ = srv.Close() })
	d.url = "http://" + l.Addr().String() + "/ping"
	return d
}

type fakeTable struct{ lines []string }

func (f *fakeTable) Update(_ context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error) {
	cur, err := iptables.ParseSave(table, "*filter\n:OUTPUT ACCEPT [0:0]\n:istio-ingress - [0:0]\n"+
		"-A OUTPUT -j istio-ingress\n-A istio-ingress -o silk-vtep -j ACCEPT\nCOMMIT\n")
	if err != nil {
		return nil, err
	}
	tx, err := plan(cur)
	if err != nil {
		return cur, err
	}
	f.lines = append(f.lines, tx.Lines()...)
	return cur, nil
}

var removed = []string{"-D OUTPUT -j istio-ingress", "-F istio-ingress", "-X istio-ingress"}

func TestRun(t *testing.T) {
	tests := []struct {
		name        string
		containers  int           // in the store at the start
		destroyIn   time.Duration // when they go (0: never)
		ignoreTerm  bool
		noPidFile   bool
		wantErr     string
		wantRemoved []string
		wantLog     string
	}{
		{name: "no containers: the daemon is stopped and the chain removed", wantRemoved: removed, wantLog: "no-containers-left"},
		{name: "containers go away while waiting", containers: 2, destroyIn: 50 * time.Millisecond, wantRemoved: removed, wantLog: "waiting-for-containers"},
		{name: "containers stay: stop anyway after the timeout", containers: 1, wantRemoved: removed, wantLog: "containers-remain"},
		{name: "the daemon ignores SIGTERM", ignoreTerm: true, wantErr: "Silk Daemon Server did not exit after 5 ping attempts"},
		{name: "the daemon is not running", noPidFile: true, wantRemoved: removed, wantLog: "silk-daemon-not-running"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			store := metadata.New(filepath.Join(t.TempDir(), "container-metadata", "store.json"))
			for i := 0; i < tc.containers; i++ {
				if err := store.Add(ctx, "c"+strconv.Itoa(i), "10.255.7."+strconv.Itoa(i+2), nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.MkdirAll(filepath.Dir(store.Path()), 0o700); err != nil {
				t.Fatal(err)
			}
			if tc.destroyIn > 0 {
				time.AfterFunc(tc.destroyIn, func() {
					for i := 0; i < tc.containers; i++ {
						_, _ = store.Delete(context.Background(), "c"+strconv.Itoa(i))
					}
				})
			}
			d := startDaemon(t, tc.ignoreTerm)
			pidFile := d.pidFile
			if tc.noPidFile {
				pidFile = filepath.Join(t.TempDir(), "missing.pid")
				_ = os.Remove(d.pidFile)
				d.url = "http://127.0.0.1:1/ping" // nothing listens there
			}
			var log strings.Builder
			logger := lager.NewLogger("shutdown")
			logger.RegisterSink(lager.NewWriterSink(&log, lager.DEBUG))
			tbl := &fakeTable{}
			cfg := shutdown.Config{
				MetadataFile: store.Path(), CheckInterval: 10 * time.Millisecond, CheckTimeout: 300 * time.Millisecond,
				DaemonURL: d.url, DaemonTimeout: 20 * time.Millisecond, DaemonPidFile: pidFile, PingTimeout: 10 * time.Second,
			}
			err := shutdown.Run(ctx, logger, cfg, store, tbl)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("err = %v, want %q\nlog:\n%s", err, tc.wantErr, log.String())
			}
			if diff := cmp.Diff(tc.wantRemoved, tbl.lines); diff != "" {
				t.Errorf("iptables (-want +got):\n%s", diff)
			}
			if tc.wantLog != "" && !strings.Contains(log.String(), tc.wantLog) {
				t.Errorf("log lacks %s:\n%s", tc.wantLog, log.String())
			}
			if !tc.ignoreTerm && !tc.noPidFile {
				select {
				case <-d.exited:
				default:
					t.Error("the daemon was not stopped")
				}
			}
		})
	}
}

func TestNoMetadataDirectory(t *testing.T) {
	dir := t.TempDir()
	tbl := &fakeTable{}
	cfg := shutdown.Config{
		MetadataFile: filepath.Join(dir, "missing", "store.json"), CheckInterval: time.Millisecond,
		DaemonURL: "http://127.0.0.1:1/ping", DaemonTimeout: time.Millisecond, PingTimeout: time.Second,
		DaemonPidFile: filepath.Join(dir, "none.pid"),
	}
	err := shutdown.Run(t.Context(), lager.NewLogger("t"), cfg, metadata.New(cfg.MetadataFile), tbl)
	if want := "stat " + filepath.Join(dir, "missing") + ": no such file or directory"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	if diff := cmp.Diff(removed, tbl.lines); diff != "" {
		t.Errorf("the chain is removed all the same (-want +got):\n%s", diff)
	}
}

func TestRunFailures(t *testing.T) {
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.pid")
	if err := os.WriteFile(garbage, []byte("nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     shutdown.Config
		wantErr string
	}{
		{"pid file garbage", shutdown.Config{MetadataFile: filepath.Join(dir, "store.json"), DaemonPidFile: garbage},
			"pid file " + garbage + `: "nope" is not a pid`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := &fakeTable{}
			err := shutdown.Run(t.Context(), lager.NewLogger("t"), tc.cfg, metadata.New(tc.cfg.MetadataFile), tbl)
			if err == nil || err.Error() != tc.wantErr {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
			if len(tbl.lines) != 0 {
				t.Errorf("iptables changed: %q", tbl.lines)
			}
		})
	}
}
