package daemon

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/testsupport/dbtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// testCell is a namespace standing in for a cell: an underlay veth pair
// (both ends inside) with underlayIP on the first end, and a netlink handle
// into it. The test itself stays in its own namespace, so the daemon logic
// it runs reaches an in-process controller on 127.0.0.1 while its kernel
// objects live in the cell.
type testCell struct {
	ns         *netnstest.NS
	nl         *System
	underlay   string
	underlayIP string
}

func newTestCell(t testing.TB) *testCell {
	t.Helper()
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "sd")
	a, b := netnstest.UniqueName("su"), netnstest.UniqueName("sp")
	netnstest.Veth(t, ns, a, "10.244.0.1/24", ns, b, "10.244.0.2/24")
	h, err := OpenSystem(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return &testCell{ns: ns, nl: h, underlay: a, underlayIP: "10.244.0.1"}
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testController is a silk-controller running in-process on sqlite.
type testController struct {
	cfg    controller.Config
	files  *mtlstest.Files
	client *controller.Client
	url    string
	stop   func()
}

func startController(t testing.TB, network string, prefixLen int) *testController {
	t.Helper()
	files := mtlstest.NewTestFiles(t)
	cfg := controller.Config{
		DebugServerPort: freePort(t), ListenHost: "127.0.0.1", ListenPort: freePort(t),
		CACertFile: files.CAFile, ServerCertFile: files.ServerCert, ServerKeyFile: files.ServerKey,
		Network: network, SubnetPrefixLength: prefixLen, Database: dbtest.NewConfig(t, sqldb.TypeSQLite),
		LeaseExpirationSeconds: 3600, MetronPort: 3457, HealthCheckPort: freePort(t),
		MetricsEmitSeconds: 30, StalenessThresholdSeconds: 3600, LogPrefix: "cfnetworking",
		Pool: sqldb.Pool{MaxOpenConnections: 10, MaxIdleConnections: 5, ConnectionsMaxLifetimeSeconds: 3600},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- controller.Run(ctx, logtest.New(t), lager.NewReconfigurableSink(lager.NewWriterSink(io.Discard, lager.DEBUG), lager.INFO), cfg)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("controller exited with %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("controller did not stop within 15s")
			}
		})
	}
	t.Cleanup(stop)
	waitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/health", cfg.HealthCheckPort), done)
	url := fmt.Sprintf("https://127.0.0.1:%d", cfg.ListenPort)
	c := &testController{cfg: cfg, files: files, url: url, stop: stop}
	dcfg := Config{ClientCertFile: files.ClientCert, ClientKeyFile: files.ClientKey, CACertFile: files.CAFile, ConnectivityServerURL: url}
	client, err := NewControllerClient(dcfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.client = client
	return c
}

func waitHTTP(t testing.TB, url string, exited <-chan error) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case err := <-exited:
			t.Fatalf("exited while waiting for %s: %v", url, err)
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
	t.Fatalf("%s never answered 200", url)
}

// daemonConfig is a complete config for a daemon in cell talking to c.
func daemonConfig(t testing.TB, c *testController, cell *testCell) Config {
	t.Helper()
	cfg := Config{
		UnderlayIP:                cell.underlayIP,
		SubnetPrefixLength:        c.cfg.SubnetPrefixLength,
		OverlayNetwork:            OverlayNetwork{c.cfg.Network},
		HealthCheckPort:           freePort(t),
		VTEPName:                  "silk-vtep",
		ConnectivityServerURL:     c.url,
		CACertFile:                c.files.CAFile,
		ClientCertFile:            c.files.ClientCert,
		ClientKeyFile:             c.files.ClientKey,
		VNI:                       1,
		VTEPPort:                  4789,
		PollInterval:              1,
		DebugServerPort:           freePort(t),
		Datastore:                 filepath.Join(t.TempDir(), "store.json"),
		PartitionToleranceSeconds: 3600,
		ClientTimeoutSeconds:      5,
		MetronPort:                3457,
		LogPrefix:                 "cfnetworking",
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func writeStore(t testing.TB, path string, containers int) {
	t.Helper()
	body := "{"
	for i := range containers {
		if i > 0 {
			body += ","
		}
		body += fmt.Sprintf(`"ns-%d": {"handle": "ns-%d", "ip": "10.255.0.%d", "metadata": {}}`, i, i, i+2)
	}
	body += "}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeFile(path, body string) error { return os.WriteFile(path, []byte(body), 0o600) }
