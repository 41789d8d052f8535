package celltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// AdminToken is the lab policy server's bearer token (network.admin).
const AdminToken = "lab-admin-token"

// PolicyServers are the lab's policy-server (external API, plain HTTP on
// the test's 127.0.0.1) and policy-server-internal (mTLS on the underlay,
// where the cells' agents reach it), sharing one SQLite database.
type PolicyServers struct {
	ExternalURL  string
	InternalURL  string
	external     *Proc
	internal     *Proc
	internalArgs []string
	internalLog  string
	health       string
}

func (l *Lab) startPolicyServers() {
	t := l.t
	dbFile := filepath.Join(l.Dir, "policy.db")
	db := map[string]any{"type": "sqlite", "database_name": dbFile, "timeout": 10}
	tokens := writeJSON(t, l.Dir, "tokens.json", map[string]any{
		AdminToken: map[string]any{"user_name": "admin", "scopes": []string{"network.admin"}},
	})
	extPort := ports.Free(t, "127.0.0.1")
	ext := writeJSON(t, l.Dir, "policy-server.json", map[string]any{
		"listen_host": "127.0.0.1", "listen_port": extPort, "log_prefix": "cfnetworking", "log_level": "debug",
		"debug_server_host": "127.0.0.1", "debug_server_port": ports.Free(t, "127.0.0.1"),
		"auth_tokens_file": tokens, "request_timeout": 5, "database": db, "database_migration_timeout": 60,
		"tag_length": 2, "metron_address": "127.0.0.1:3457", "cleanup_interval": 3600, "max_policies": 150,
	})
	ps := &PolicyServers{ExternalURL: fmt.Sprintf("http://127.0.0.1:%d", extPort)}
	ps.external = Start(t, filepath.Join(l.Dir, "policy-server.log"), nil, filepath.Join(l.Bins, "policy-server"), "-config-file", ext)
	waitHTTP(t, ps.external, ps.ExternalURL+"/")

	ca := mtlstest.CA(t)
	cert, key, err := ca.Issue(mtls.PolicyServerHost, []string{l.RootIP}, mtls.Server)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := mtls.WriteKeyPair(l.Dir, "policy-server-internal", cert, key)
	if err != nil {
		t.Fatal(err)
	}
	intPort := ports.Free(t, l.RootIP)
	health := ports.Free(t, "127.0.0.1")
	internal := writeJSON(t, l.Dir, "policy-server-internal.json", map[string]any{
		"log_prefix": "cfnetworking", "log_level": "debug", "listen_host": l.RootIP, "internal_listen_port": intPort,
		"debug_server_host": "127.0.0.1", "debug_server_port": ports.Free(t, "127.0.0.1"), "health_check_port": health,
		"ca_cert_file": l.certs.CAFile, "server_cert_file": certFile, "server_key_file": keyFile,
		"database": db, "tag_length": 2, "metron_address": "127.0.0.1:3457", "request_timeout": 5,
	})
	ps.InternalURL = fmt.Sprintf("https://%s:%d", l.RootIP, intPort)
	ps.internalArgs = []string{filepath.Join(l.Bins, "policy-server-internal"), "-config-file", internal}
	ps.internalLog = filepath.Join(l.Dir, "policy-server-internal.log")
	ps.health = fmt.Sprintf("http://127.0.0.1:%d/health", health)
	l.Policy = ps
	l.StartInternal()
}

// StartInternal (re)starts policy-server-internal.
func (l *Lab) StartInternal() {
	ps := l.Policy
	ps.internal = Start(l.t, ps.internalLog, nil, ps.internalArgs[0], ps.internalArgs[1:]...)
	waitHTTP(l.t, ps.internal, ps.health)
}

// StopInternal stops policy-server-internal (the cells' agents lose it).
func (l *Lab) StopInternal() {
	l.Policy.internal.Signal(syscall.SIGTERM)
	_ = l.Policy.internal.Wait(l.t, 15*time.Second)
}

// PolicyJSON is one v1 external API policy.
func PolicyJSON(src, dst, proto string, start, end int) map[string]any {
	return map[string]any{
		"source":      map[string]any{"id": src},
		"destination": map[string]any{"id": dst, "protocol": proto, "ports": map[string]any{"start": start, "end": end}},
	}
}

// external calls the external API as the lab admin.
func (l *Lab) external(method, path string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	req, err := http.NewRequest(method, l.Policy.ExternalURL+path, bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp.StatusCode, data, err
}

// CreatePolicies creates policies through the external API and returns
// when it answered (the moment propagation is measured from).
func (l *Lab) CreatePolicies(t testing.TB, policies ...map[string]any) time.Time {
	t.Helper()
	code, body, err := l.external(http.MethodPost, "/networking/v1/external/policies", map[string]any{"policies": policies})
	at := time.Now()
	if err != nil || code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("create policies: %d %s %v", code, body, err)
	}
	return at
}

// DeletePolicies deletes policies through the external API.
func (l *Lab) DeletePolicies(t testing.TB, policies ...map[string]any) time.Time {
	t.Helper()
	code, body, err := l.external(http.MethodPost, "/networking/v1/external/policies/delete", map[string]any{"policies": policies})
	at := time.Now()
	if err != nil || code != http.StatusOK {
		t.Fatalf("delete policies: %d %s %v", code, body, err)
	}
	return at
}

// AgentConfig is the cell's vxlan-policy-agent.json (upstream keys).
func (c *Cell) AgentConfig() map[string]any {
	l := c.lab
	return map[string]any{
		"poll_interval": 5, "enable_asg_syncing": true, "asg_poll_interval": 60,
		"cni_datastore_path": filepath.Join(c.Dir, "container-metadata", "store.json"),
		"policy_server_url":  l.Policy.InternalURL, "vni": 1, "metron_address": "127.0.0.1:3457",
		"ca_cert_file": l.certs.CAFile, "client_cert_file": l.certs.ClientCert, "client_key_file": l.certs.ClientKey,
		"client_timeout_seconds": 5, "iptables_lock_file": filepath.Join(c.Dir, "iptables.lock"),
		"debug_server_host": "127.0.0.1", "debug_server_port": 8721, "log_level": "debug", "log_prefix": "cfnetworking",
		"iptables_c2c_logging": l.opts.C2CLogging, "iptables_asg_logging": false,
		"iptables_accepted_udp_logs_per_sec": 100, "iptables_denied_logs_per_sec": 1,
		"enable_overlay_ingress_rules": false, "force_policy_poll_cycle_host": "127.0.0.1", "force_policy_poll_cycle_port": 8722,
		"disable_container_network_policy": false, "overlay_network": "10.255.0.0/16", "underlay_ips": []string{c.UnderlayIP},
		"deny_networks":        map[string]any{"always": []string{}, "running": []string{}, "staging": []string{}},
		"outbound_connections": map[string]any{"limit": false, "logging": false, "burst": 1000, "rate_per_sec": 100},
	}
}

// StartAgent starts the cell's vxlan-policy-agent and waits for its force
// endpoint; extra overrides config keys.
func (c *Cell) StartAgent(extra map[string]any) {
	t := c.lab.t
	if err := os.MkdirAll(filepath.Join(c.Dir, "container-metadata"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := c.AgentConfig()
	for k, v := range extra {
		cfg[k] = v
	}
	path := writeJSON(t, c.Dir, "vxlan-policy-agent.json", cfg)
	if c.agent == nil {
		// One cleanup for every incarnation, registered before the cell's
		// containers': the agent must outlive their CNI DELs.
		t.Cleanup(func() { c.agent.stop(t) })
	}
	c.agent = startProc(t, filepath.Join(c.Dir, "vxlan-policy-agent.log"), c.NS, filepath.Join(c.lab.Bins, "vxlan-policy-agent"), "-config-file", path)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c.agent.Exited() {
			t.Fatalf("vxlan-policy-agent on cell %d exited: %s", c.Index, c.agent.Output())
		}
		if code, _, err := c.Get("http://127.0.0.1:8721/log-level"); err == nil && code == 200 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("vxlan-policy-agent on cell %d never served its debug endpoint: %s", c.Index, c.agent.Output())
}

// KillAgent ends the cell's agent with SIGKILL.
func (c *Cell) KillAgent() {
	c.agent.Signal(syscall.SIGKILL)
	_ = c.agent.Wait(c.lab.t, 10*time.Second)
}

// AgentLog is what the cell's agent has logged.
func (c *Cell) AgentLog() string { return c.agent.Output() }

// Get does an HTTP request from inside the cell (its 127.0.0.1).
func (c *Cell) Get(url string) (int, string, error) { return c.Do(http.MethodGet, url, "") }

// Do does an HTTP request with a body from inside the cell.
func (c *Cell) Do(method, url, body string) (int, string, error) {
	var code int
	var out []byte
	err := c.NS.Do(func() error {
		req, err := http.NewRequest(method, url, bytes.NewReader([]byte(body)))
		if err != nil {
			return err
		}
		// The transport dials on goroutines of its own, outside the cell's
		// namespace: hand it a connection made here, in the cell.
		conn, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
		if err != nil {
			return err
		}
		tr := &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		out, err = io.ReadAll(resp.Body)
		return err
	})
	return code, string(out), err
}

// AgentPID is the process id of the cell's running agent.
func (c *Cell) AgentPID() int { return c.agent.cmd.Process.Pid }

// StartLogger runs iptables-logger for the cell in the test's namespace,
// reading the kernel log from /dev/kmsg (LOG lines from every namespace
// land there once nf_log_all_netns is on), and returns its output file.
func (c *Cell) StartLogger() string {
	t := c.lab.t
	out := filepath.Join(c.Dir, "iptables.log")
	path := writeJSON(t, c.Dir, "iptables-logger.json", map[string]any{
		"kernel_log_file": "/dev/kmsg", "container_metadata_file": filepath.Join(c.Dir, "container-metadata", "store.json"),
		"output_log_file": out, "metron_address": "127.0.0.1:3457", "host_ip": c.UnderlayIP,
		"host_guid": fmt.Sprintf("cell-%d", c.Index), "log_timestamp_format": "rfc3339",
	})
	p := Start(t, filepath.Join(c.Dir, "iptables-logger.log"), nil, filepath.Join(c.lab.Bins, "iptables-logger"), "-config-file", path)
	time.Sleep(200 * time.Millisecond) // it tails from the end: let it open the log first
	if p.Exited() {
		t.Fatalf("iptables-logger exited: %s", p.Output())
	}
	return out
}

// LogAllNetns turns on net.netfilter.nf_log_all_netns (LOG rules in
// namespaces other than the initial one print nothing without it) and
// restores the old value when the test ends.
func LogAllNetns(t testing.TB) {
	const path = "/proc/sys/net/netfilter/nf_log_all_netns"
	old, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("nf_log_all_netns: %v", err)
	}
	if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.WriteFile(path, old, 0o644) })
}
