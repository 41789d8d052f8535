package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/controller/controllertest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/netnstest"

	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "silk-daemon", main)) }

func runFailing(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1; stderr:\n%s", err, stderr.String())
	}
	return stderr.String()
}

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.json")
	if err := os.WriteFile(path, []byte(`{"underlay_ip": "nope", "overlay_network": "10.255.0.0/16", "subnet_prefix_length": 16, "log_prefix": "potato-prefix"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	stderr := runFailing(t, maintest.Command("-config", path))
	for _, want := range []string{
		// Upstream fails before it reads log_prefix.
		"cfnetworking.silk-daemon error: load config file: invalid config:",
		`underlay_ip: invalid IPv4 address "nope"`,
		"overlay prefix 16 must be smaller than subnet prefix 16",
		"vtep_name: missing required value",
		"ca_cert_file: missing required value",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestMissingConfigKeepsUpstreamsMessage(t *testing.T) {
	stderr := runFailing(t, maintest.Command("-config", "/some/bad/path"))
	if !strings.Contains(stderr, "cfnetworking.silk-daemon error: load config file: reading file /some/bad/path") {
		t.Errorf("stderr:\n%s", stderr)
	}
}

// cellNet joins a new namespace to the test's own with a veth pair on a
// random /30 of 198.18.0.0/16 (the benchmarking range): the root side
// carries the controller, the cell side is the cell's underlay.
func cellNet(t *testing.T) (ns *netnstest.NS, rootIP, cellIP string) {
	t.Helper()
	netnstest.RequireRoot(t)
	ns = netnstest.New(t, "sdm")
	b := make([]byte, 2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	rootIP = fmt.Sprintf("198.18.%d.%d", b[0], b[1]&0xfc+1)
	cellIP = fmt.Sprintf("198.18.%d.%d", b[0], b[1]&0xfc+2)
	netnstest.Veth(t, nil, netnstest.UniqueName("sr"), rootIP+"/30", ns, netnstest.UniqueName("sc"), cellIP+"/30")
	return ns, rootIP, cellIP
}

// startController runs silk-controller in-process, listening on host with a
// certificate for it.
func startController(t *testing.T, host string) (url string, files *mtlstest.Files, client *controller.Client) {
	t.Helper()
	c := controllertest.Start(t, controllertest.Options{Host: host})
	return c.URL, c.Files, c.Client(t)
}

// getInNS fetches url from inside ns: the connection is dialled on a thread
// switched into the namespace, where its 127.0.0.1 lives.
func getInNS(ns *netnstest.NS, addr string) (string, error) {
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", addr); err != nil {
		return "", err
	}
	raw, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	if !strings.HasPrefix(head, "HTTP/1.0 200") {
		return "", fmt.Errorf("answer %q", head)
	}
	return body, nil
}

func TestDaemonInACell(t *testing.T) {
	ns, rootIP, cellIP := cellNet(t)
	url, files, client := startController(t, rootIP)
	dir := t.TempDir()
	health := 23954
	cfg := map[string]any{
		"underlay_ip": cellIP, "subnet_prefix_length": 24, "overlay_network": "10.255.0.0/16",
		"health_check_port": health, "vtep_name": "silk-vtep", "connectivity_server_url": url,
		"ca_cert_file": files.CAFile, "client_cert_file": files.ClientCert, "client_key_file": files.ClientKey,
		"vni": 1, "vtep_port": 4789, "poll_interval": 1, "debug_server_port": 22233,
		"datastore": filepath.Join(dir, "store.json"), "partition_tolerance_seconds": 3600,
		"client_timeout_seconds": 5, "metron_port": 3457, "log_prefix": "cfnetworking",
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "client-config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	var stdout, stderr bytes.Buffer
	cmd := maintest.Wrap("ip", "netns", "exec", ns.Name, os.Args[0], "-config", path)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-done
		}
	})

	var body string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		select {
		case err := <-done:
			t.Fatalf("silk-daemon exited: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		default:
		}
		var err error
		if body, err = getInNS(ns, fmt.Sprintf("127.0.0.1:%d", health)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("info endpoint never answered: %v\nstdout:\n%s", err, stdout.String())
		}
	}
	var info struct {
		OverlaySubnet string `json:"overlay_subnet"`
		MTU           int    `json:"mtu"`
	}
	if err := json.Unmarshal([]byte(body), &info); err != nil || info.MTU != 1450 || !strings.HasPrefix(info.OverlaySubnet, "10.255.") {
		t.Fatalf("info = %q (%v)", body, err)
	}
	leases, err := client.RoutableLeases(context.Background())
	if err != nil || len(leases) != 1 || leases[0].UnderlayIP != cellIP || leases[0].OverlaySubnet != info.OverlaySubnet {
		t.Fatalf("controller leases = %+v, %v", leases, err)
	}
	if out := ns.Run(t, "ip", "-d", "link", "show", "silk-vtep"); !strings.Contains(out, "gbp") || !strings.Contains(out, "local "+cellIP) {
		t.Errorf("VTEP:\n%s", out)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM = %v; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit within 15s of SIGTERM")
	}
	// Upstream's info lines: starting, then acquired-lease with the lease;
	// nothing announces the exit.
	var infos []string
	for _, l := range logtest.ParseJSON(t, stdout.String()) {
		if l.Level == "info" && !strings.HasSuffix(l.Message, ".listening") {
			infos = append(infos, l.Message)
		}
	}
	want := []string{"cfnetworking.silk-daemon.starting", "cfnetworking.silk-daemon.no-local-lease", "cfnetworking.silk-daemon.acquired-lease"}
	if diff := cmp.Diff(want, infos); diff != "" {
		t.Errorf("info lines (-want +got):\n%s\n%s", diff, stdout.String())
	}
	acquired := logtest.FindIn(logtest.ParseJSON(t, stdout.String()), "cfnetworking.silk-daemon.acquired-lease")
	if l, _ := acquired[0].Data["lease"].(map[string]any); l["underlay_ip"] != cellIP || l["overlay_subnet"] != info.OverlaySubnet {
		t.Errorf("acquired-lease data = %+v", acquired[0].Data)
	}
	// The VTEP outlives the process: the next start renews its lease.
	ns.Run(t, "ip", "link", "show", "silk-vtep")
}

func TestUnreachableControllerExitsWithUpstreamsMessage(t *testing.T) {
	ns, _, cellIP := cellNet(t)
	files := mtlstest.NewTestFiles(t)
	dir := t.TempDir()
	cfg := map[string]any{
		"underlay_ip": cellIP, "subnet_prefix_length": 24, "overlay_network": "10.255.0.0/16",
		"health_check_port": 23954, "vtep_name": "silk-vtep", "connectivity_server_url": "https://127.0.0.1:1",
		"ca_cert_file": files.CAFile, "client_cert_file": files.ClientCert, "client_key_file": files.ClientKey,
		"vni": 1, "vtep_port": 4789, "poll_interval": 1, "debug_server_port": 22233,
		"datastore": filepath.Join(dir, "store.json"), "partition_tolerance_seconds": 3600,
		"client_timeout_seconds": 1, "metron_port": 3457, "log_prefix": "potato-prefix",
	}
	data, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "c.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := maintest.Wrap("ip", "netns", "exec", ns.Name, os.Args[0], "-config", path)
	stderr := runFailing(t, cmd)
	if !strings.Contains(stderr, "potato-prefix.silk-daemon error: acquire subnet lease: http client do: ") {
		t.Errorf("stderr:\n%s", stderr)
	}
}
