package daemon

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/controller/controllertest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/ports"
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
	c := controllertest.Start(t, controllertest.Options{Network: network, SubnetPrefixLength: prefixLen})
	dcfg := Config{ClientCertFile: c.Files.ClientCert, ClientKeyFile: c.Files.ClientKey, CACertFile: c.Files.CAFile, ConnectivityServerURL: c.URL}
	client, err := NewControllerClient(dcfg, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return &testController{cfg: c.Config, files: c.Files, client: client, url: c.URL, stop: c.Stop}
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
		HealthCheckPort:           ports.Free(t, "127.0.0.1"),
		VTEPName:                  "silk-vtep",
		ConnectivityServerURL:     c.url,
		CACertFile:                c.files.CAFile,
		ClientCertFile:            c.files.ClientCert,
		ClientKeyFile:             c.files.ClientKey,
		VNI:                       1,
		VTEPPort:                  4789,
		PollInterval:              1,
		DebugServerPort:           ports.Free(t, "127.0.0.1"),
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
