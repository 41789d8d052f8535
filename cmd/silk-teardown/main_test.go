package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/controller/controllertest"
	"github.com/netman-release/netman/src/silk/daemon"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"

	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "silk-teardown", main)) }

func startController(t *testing.T) (string, *mtlstest.Files, *controller.Client) {
	t.Helper()
	c := controllertest.Start(t, controllertest.Options{})
	return c.URL, c.Files, c.Client(t)
}

func writeConfig(t *testing.T, url string, files *mtlstest.Files, underlayIP string) (string, daemon.Config) {
	t.Helper()
	cfg := daemon.Config{
		UnderlayIP: underlayIP, SubnetPrefixLength: 24, OverlayNetwork: daemon.OverlayNetwork{"10.255.0.0/16"},
		HealthCheckPort: 23954, VTEPName: "silk-vtep", ConnectivityServerURL: url,
		CACertFile: files.CAFile, ClientCertFile: files.ClientCert, ClientKeyFile: files.ClientKey,
		VNI: 1, VTEPPort: 4789, PollInterval: 30, DebugServerPort: 22233,
		Datastore: filepath.Join(t.TempDir(), "store.json"), PartitionToleranceSeconds: 3600,
		ClientTimeoutSeconds: 5, MetronPort: 3457, LogPrefix: "cfnetworking",
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(t.TempDir(), "client-config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

func run(ns *netnstest.NS, args ...string) (stdout, stderr string, code int) {
	cmd := maintest.Command(args...)
	if ns != nil {
		cmd = maintest.Wrap("ip", append([]string{"netns", "exec", ns.Name, os.Args[0]}, args...)...)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		code = -1
	}
	return o.String(), e.String(), code
}

func TestMissingConfig(t *testing.T) {
	_, stderr, code := run(nil, "-config", "/some/bad/path")
	if code != 1 || !strings.Contains(stderr, "silk-teardown error: load config file: reading file /some/bad/path") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestTeardownReleasesTheLeaseAndDeletesTheVTEP(t *testing.T) {
	netnstest.RequireRoot(t)
	url, files, client := startController(t)
	// The controller runs on the test's 127.0.0.1, which a process inside
	// the cell cannot reach: the success path runs in-process through a
	// netlink handle into the cell; the binary then runs inside the cell,
	// where both steps fail and both failures are reported.
	ns := netnstest.New(t, "std")
	netnstest.Veth(t, ns, netnstest.UniqueName("su"), "10.244.0.1/24", ns, netnstest.UniqueName("sp"), "10.244.0.2/24")
	h, err := daemon.OpenSystem(ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	path, cfg := writeConfig(t, url, files, "10.244.0.1")
	if _, err := daemon.Start(context.Background(), logtest.New(t), cfg, h, client); err != nil {
		t.Fatal(err)
	}
	if err := daemon.Teardown(context.Background(), logtest.New(t), cfg, h, nil); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if leases, err := client.RoutableLeases(context.Background()); err != nil || len(leases) != 0 {
		t.Errorf("leases after teardown: %+v, %v", leases, err)
	}
	if _, err := h.LinkByName("silk-vtep"); err == nil {
		t.Error("VTEP survived teardown")
	}

	// Run again: nothing to release (fine), no VTEP (an error, as upstream).
	stdout, stderr, code := run(ns, "-config", path)
	if code != 1 {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	for _, want := range []string{"silk-teardown error: ", "release subnet lease: http client do: ", "delete vtep: find link silk-vtep: Link not found"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(stdout, `"source":"cfnetworking.silk-teardown"`) || !strings.Contains(stdout, "complete") {
		t.Errorf("stdout:\n%s", stdout)
	}
}
