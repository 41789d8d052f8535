package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/logtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "bosh-dns-adapter", main)) }

func TestBadConfigExits2NamingEveryProblem(t *testing.T) {
	path := configtest.Write(t, "config.json", []byte(`{"address": "127.0.0.1", "port": "8053", "metron_port": -2, "internal_route_vip_range": "nope"}`))
	p := discoverytest.StartProcess(t, maintest.Command("-c", path))
	if code := p.Wait(t, 10*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{"service_discovery_controller_address: missing required value", "client_cert: missing required value",
		"metron_port: must be at least 1", "internal_route_vip_range: invalid CIDR address: nope"} {
		if !strings.Contains(p.Stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.Stderr)
		}
	}
	checkConfigLine(t, p.Stdout.String(), "bosh-dns-adapter.Could not parse config file", path)
}

// checkConfigLine wants upstream's info line for a config file it could not
// use, with the path (and netman's "error").
func checkConfigLine(t *testing.T, stdout, message, path string) {
	t.Helper()
	lines := logtest.FindIn(logtest.ParseJSON(t, stdout), message)
	if len(lines) != 1 || lines[0].Level != "info" || lines[0].Data["path"] != path || lines[0].Data["error"] == "" {
		t.Errorf("%s lines = %+v\n%s", message, lines, stdout)
	}
}

func TestMissingConfigExits2(t *testing.T) {
	p := discoverytest.StartProcess(t, maintest.Command("-c", "/nonexistent/adapter.json"))
	if code := p.Wait(t, 10*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	checkConfigLine(t, p.Stdout.String(), "bosh-dns-adapter.Could not read config file", "/nonexistent/adapter.json")
}

func TestAddressInUseExits1(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	files := mtlstest.NewTestFiles(t)
	cfg := discoverytest.AdapterConfig(t, files, "8054")
	cfg.Port = fmt.Sprint(l.Addr().(*net.TCPAddr).Port)
	p := discoverytest.StartProcess(t, maintest.Command("-c", configtest.Write(t, "config.json", cfg)))
	if code := p.Wait(t, 10*time.Second); code != 1 {
		t.Fatalf("exit %d, want 1", code)
	}
	if want := fmt.Sprintf("Address (127.0.0.1:%s) not available", cfg.Port); !strings.Contains(p.Stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, p.Stdout)
	}
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	cfg := discoverytest.AdapterConfig(t, files, "1") // no controller: queries fail, health does not
	p := discoverytest.StartProcess(t, maintest.Command("-c", configtest.Write(t, "config.json", cfg)))
	p.WaitForOutput(t, `"message":"bosh-dns-adapter.server-started"`, 20*time.Second)

	base := "http://127.0.0.1:" + cfg.Port
	resp, err := http.Get(base + "/health")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(base + "/?name=app.apps.internal.&type=1")
	if err != nil || resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("query without a controller: %v %v, want 500", resp, err)
	}
	resp.Body.Close()
	// The process writes the line after answering; give the pipe a moment.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.Stderr.String(), "could not connect to service discovery controller") {
		if time.Now().After(deadline) {
			t.Errorf("error not on stderr:\n%s", p.Stderr)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}

	if code := p.Stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stdout:\n%s", code, p.Stdout)
	}
	if !strings.Contains(p.Stdout.String(), `"message":"bosh-dns-adapter.server-stopped"`) {
		t.Errorf("no server-stopped:\n%s", p.Stdout)
	}
}
