package main

import (
	"context"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/metrics"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/policyserver/store/storetest"
	"github.com/netman-release/netman/src/silk/bootstrap"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

func TestMain(m *testing.M) {
	if os.Getenv(maintest.Env) == "1" {
		os.Exit(maintest.Run(m, "silk-daemon-bootstrap", main))
	}
	os.Exit(storetest.Main(m))
}

// policyServer runs policy-server-internal's API over mTLS on l, backed by
// a fresh SQLite store.
func policyServer(t *testing.T, l net.Listener, files *mtlstest.Files) (*store.Store, string) {
	t.Helper()
	logger := logtest.New(t)
	sender, err := metrics.NewSender(nil, "test", 0)
	if err != nil {
		t.Fatal(err)
	}
	st := store.New(storetest.Open(t, "sqlite", logger), 2, sender)
	w := internalapi.NewWatcher(st.LastUpdated, 10*time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = w.Run(ctx); close(done) }()
	tlsConfig, err := mtls.ServerConfig(files.ServerCert, files.ServerKey, files.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(internalapi.NewAPI(logger, st, st, w, sender).Handler(nil))
	_ = srv.Listener.Close()
	srv.Listener = l
	srv.TLS = tlsConfig
	srv.StartTLS()
	t.Cleanup(func() { srv.Close(); cancel(); <-done })
	return st, srv.URL
}

func writeConfig(t *testing.T, cfg bootstrap.Config) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bootstrap-config.json")
	configtest.WriteFile(t, path, cfg)
	return path
}

func config(url string, files *mtlstest.Files, lock string) bootstrap.Config {
	return bootstrap.Config{
		PolicyServerURL: url, PolicyServerCACertFile: files.CAFile,
		PolicyClientCertFile: files.ClientCert, PolicyClientKeyFile: files.ClientKey,
		IPTablesLockFile: lock, SingleIPOnly: true,
	}
}

// TestSingleIPVM runs the bootstrap in a namespace against the real
// policy-server-internal: the router tag is created there and marks the
// VM's overlay traffic; a second run (pre-start again) changes nothing.
func TestSingleIPVM(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) { testSingleIPVM(t, fl) })
	}
}

func testSingleIPVM(t *testing.T, fl iptables.Flavor) {
	ns := netnstest.New(t, "boot")
	files := mtlstest.NewTestFiles(t)
	var l net.Listener
	if err := ns.Do(func() (err error) {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	st, url := policyServer(t, l, files)
	lock := filepath.Join(t.TempDir(), "garden-cni", "iptables.lock")
	path := writeConfig(t, config(url, files, lock))
	bin := netnstest.IPTablesBinDir(t, fl)

	var want string
	for run := 1; run <= 2; run++ {
		cmd := maintest.Wrap("ip", "netns", "exec", ns.Name, os.Args[0], "-config", path)
		cmd.Env = append(cmd.Env, "PATH="+bin+":"+os.Getenv("PATH"))
		var out maintest.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("run %d: %v\n%s", run, err, out.String())
		}
		if run == 1 {
			if !strings.Contains(out.String(), `"message":"cfnetworking.silk-daemon-bootstrap.bootstrap.marking-overlay-traffic"`) {
				t.Errorf("log:\n%s", out.String())
			}
			tags, err := st.Tags(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if len(tags) != 1 || tags[0].ID != "INGRESS_ROUTER" || tags[0].Type != "router" {
				t.Fatalf("policy server tags: %+v", tags)
			}
			rules, err := bootstrap.Rules(tags[0].Tag)
			if err != nil {
				t.Fatal(err)
			}
			want = "-A OUTPUT -j istio-ingress\n-A istio-ingress " + string(rules[0]) + "\n-A istio-ingress " + string(rules[1]) + "\n"
		}
		var got strings.Builder
		for _, line := range strings.Split(ns.Run(t, "iptables-"+string(fl)+"-save", "-t", "filter"), "\n") {
			if strings.HasPrefix(line, "-A ") {
				got.WriteString(line + "\n")
			}
		}
		if got.String() != want {
			t.Errorf("run %d: filter rules:\n%s\nwant:\n%s", run, got.String(), want)
		}
	}
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("the iptables lock file was not used: %v", err)
	}
}

func TestPolicyServerWithAnotherCA(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, url := policyServer(t, l, files)
	cfg := config(url, files, filepath.Join(t.TempDir(), "iptables.lock"))
	cfg.PolicyServerCACertFile = files.OtherCAFile
	stderr := maintest.Fails(t, maintest.Command("-config", writeConfig(t, cfg)), 1)
	if !strings.Contains(stderr, "certificate signed by unknown authority") {
		t.Errorf("stderr: %s", stderr)
	}
	if _, err := os.Stat(cfg.IPTablesLockFile); !os.IsNotExist(err) {
		t.Errorf("iptables was touched: %v", err)
	}
}

func TestNotSingleIP(t *testing.T) {
	lock := filepath.Join(t.TempDir(), "iptables.lock")
	cmd := maintest.Command("-config", writeConfig(t, bootstrap.Config{IPTablesLockFile: lock}))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Errorf("iptables was touched: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := maintest.Fails(t, maintest.Command("-config", path), 1)
	if stderr != "silk-daemon-bootstrap: parsing config: unexpected end of JSON input\n" {
		t.Errorf("stderr %q", stderr)
	}
}
