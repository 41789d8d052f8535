package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/maintest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "service-discovery-controller", main)) }

func TestBadConfigExitsNamingEveryProblem(t *testing.T) {
	path := configtest.Write(t, "config.json", []byte(`{"port": "8054", "metron_port": 3457, "nats": {"hosts": []}}`))
	p := discoverytest.StartProcess(t, maintest.Command("-c", path))
	if code := p.Wait(t, 10*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	for _, want := range []string{"address: missing required value", "server_cert: missing required value",
		"staleness_threshold_seconds: must be at least 1", "nats.hosts: missing required value"} {
		if !strings.Contains(p.Stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.Stderr)
		}
	}
	if want := fmt.Sprintf("Could not parse config file at path '%s'", path); !strings.Contains(p.Stdout.String(), want) {
		t.Errorf("stdout lacks %q:\n%s", want, p.Stdout)
	}
}

func TestMissingConfigExits2(t *testing.T) {
	p := discoverytest.StartProcess(t, maintest.Command("-c", "/nonexistent/sdc.json"))
	if code := p.Wait(t, 10*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(p.Stdout.String(), "Could not read config file at path '/nonexistent/sdc.json'") {
		t.Errorf("stdout:\n%s", p.Stdout)
	}
}

func TestUnreachableNATSExits2(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{})
	cfg := discoverytest.ControllerConfig(t, files, n)
	n.Stop()
	p := discoverytest.StartProcess(t, maintest.Command("-c", configtest.Write(t, "config.json", cfg)))
	if code := p.Wait(t, 20*time.Second); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	if !strings.Contains(p.Stdout.String(), "unable to create nats connection: nats: no servers available for connection") {
		t.Errorf("stdout:\n%s", p.Stdout)
	}
}

func TestServesAndStopsOnSIGTERM(t *testing.T) {
	files := mtlstest.NewTestFiles(t)
	n := discoverytest.StartNATS(t, discoverytest.NATSConfig{})
	cfg := discoverytest.ControllerConfig(t, files, n)
	p := discoverytest.StartProcess(t, maintest.Command("-c", configtest.Write(t, "config.json", cfg)))
	p.WaitForOutput(t, `"message":"service-discovery-controller.server-started"`, 20*time.Second)

	e, err := discoverytest.NewEmitter(n.URL(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if err := e.Register(discoverytest.Instance{Hostname: "app.apps.internal", IP: "10.255.1.2"}); err != nil {
		t.Fatal(err)
	}
	client := discoverytest.Client(t, files)
	url := fmt.Sprintf("https://127.0.0.1:%s/v1/registration/app.apps.internal.", cfg.Port)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := client.Get(url)
		if err == nil {
			var body struct {
				Hosts []struct {
					IP string `json:"ip_address"`
				} `json:"hosts"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && len(body.Hosts) == 1 && body.Hosts[0].IP == "10.255.1.2" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never registered: %v\n%s", err, p.Stdout)
		}
	}

	if code := p.Stop(t, 15*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM; stdout:\n%s", code, p.Stdout)
	}
	if !strings.Contains(p.Stdout.String(), `"source":"service-discovery-controller","message":"service-discovery-controller.server-stopped"`) {
		t.Errorf("no server-stopped:\n%s", p.Stdout)
	}
}
