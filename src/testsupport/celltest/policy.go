package celltest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/lab"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/policyserver/store"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/cc"
	"github.com/netman-release/netman/src/testsupport/netnstest"
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
	writeJSON(t, l.Dir, "tokens.json", lab.Tokens(AdminToken))
	l.plan.Ports.External = ports.Free(t, "127.0.0.1")
	l.plan.Ports.ExternalDebug = ports.Free(t, "127.0.0.1")
	ext := writeJSON(t, l.Dir, "policy-server.json", l.plan.PolicyServer())
	ps := &PolicyServers{ExternalURL: l.plan.ExternalURL()}
	ps.external = Start(t, filepath.Join(l.Dir, "policy-server.log"), nil, filepath.Join(l.Bins, "policy-server"), "-config-file", ext)
	waitHTTP(t, ps.external, ps.ExternalURL+"/")

	l.plan.Certs.InternalCert, l.plan.Certs.InternalKey = issueServerCert(t, l.Dir, "policy-server-internal", mtls.PolicyServerHost, l.RootIP)
	l.plan.Ports.Internal = ports.Free(t, l.RootIP)
	l.plan.Ports.InternalHealth = ports.Free(t, "127.0.0.1")
	l.plan.Ports.InternalDebug = ports.Free(t, "127.0.0.1")
	internal := writeJSON(t, l.Dir, "policy-server-internal.json", l.plan.PolicyServerInternal())
	ps.InternalURL = l.plan.InternalURL()
	ps.internalArgs = []string{filepath.Join(l.Bins, "policy-server-internal"), "-config-file", internal}
	ps.internalLog = filepath.Join(l.Dir, "policy-server-internal.log")
	ps.health = fmt.Sprintf("http://127.0.0.1:%d/health", l.plan.Ports.InternalHealth)
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

// CreatePolicies creates policies through the external API and returns
// when it answered (the moment propagation is measured from).
func (l *Lab) CreatePolicies(t testing.TB, policies ...policy.Policy) time.Time {
	t.Helper()
	err := l.plan.PolicyAPI(AdminToken).CreatePolicies(context.Background(), policies)
	at := time.Now()
	if err != nil {
		t.Fatalf("create policies: %v", err)
	}
	return at
}

// DeletePolicies deletes policies through the external API.
func (l *Lab) DeletePolicies(t testing.TB, policies ...policy.Policy) time.Time {
	t.Helper()
	err := l.plan.PolicyAPI(AdminToken).DeletePolicies(context.Background(), policies)
	at := time.Now()
	if err != nil {
		t.Fatalf("delete policies: %v", err)
	}
	return at
}

// AgentConfig is the cell's vxlan-policy-agent.json.
func (c *Cell) AgentConfig() agent.Config { return c.lab.plan.Agent(c.plan()) }

// StartAgent starts the cell's vxlan-policy-agent and waits for its force
// endpoint; configure, when not nil, changes its config first.
func (c *Cell) StartAgent(configure func(*agent.Config)) {
	t := c.lab.t
	if err := os.MkdirAll(filepath.Join(c.Dir, "container-metadata"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := c.AgentConfig()
	if configure != nil {
		configure(&cfg)
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
	return c.NS.HTTP(method, url, body)
}

// AgentPID is the process id of the cell's running agent.
func (c *Cell) AgentPID() int { return c.agent.p.PID }

// StartLogger runs iptables-logger for the cell in the test's namespace,
// reading the kernel log from /dev/kmsg (LOG lines from every namespace
// land there once nf_log_all_netns is on), and returns its output file.
func (c *Cell) StartLogger() string {
	t := c.lab.t
	out := filepath.Join(c.Dir, "iptables.log")
	path := writeJSON(t, c.Dir, "iptables-logger.json", c.lab.plan.IPTablesLogger(c.plan(), out))
	p := Start(t, filepath.Join(c.Dir, "iptables-logger.log"), nil, filepath.Join(c.lab.Bins, "iptables-logger"), "-config-file", path)
	time.Sleep(200 * time.Millisecond) // it tails from the end: let it open the log first
	if p.Exited() {
		t.Fatalf("iptables-logger exited: %s", p.Output())
	}
	return out
}

// LogAllNetns turns on net.netfilter.nf_log_all_netns for the test (see
// netnstest.LogAllNetns).
func LogAllNetns(t testing.TB) { netnstest.LogAllNetns(t) }

// PolicyStore opens the lab's policy database (SQLite, shared with the
// policy servers) for writes the lab has no API for, such as the security
// groups policy-server-asg-syncer would write. It is closed in t.Cleanup.
func (l *Lab) PolicyStore(t testing.TB) *store.Store {
	t.Helper()
	db, err := sqldb.Open(context.Background(), lager.NewLogger("celltest"),
		sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(l.Dir, "policy.db"), Timeout: 10}, sqldb.Pool{MaxOpenConnections: 2, MaxIdleConnections: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return store.New(db, 2, nil)
}

// CC is a fake Cloud Controller (and UAA) with policy-server-asg-syncer
// copying its security groups into the lab's policy database.
type CC struct {
	*cc.Server
	syncer *Proc
}

// StartCC starts a fake Cloud Controller in the test process (public API
// over TLS, asg_latest_update over mutual TLS, the UAA token endpoint) and
// the real policy-server-asg-syncer against it and the lab's policy
// database (database lock, no locket), polling every pollSeconds. It
// returns once the syncer has synced the (empty) Cloud Controller.
func (l *Lab) StartCC(t testing.TB, pollSeconds int) *CC {
	t.Helper()
	const client, secret = "network-policy", "lab-secret"
	srv := cc.New(client, secret)
	t.Cleanup(func() { _ = srv.Close() })
	pub, err := srv.Start("127.0.0.1:0", l.certs.ServerConfig(t, mtls.WithoutClientAuth()))
	if err != nil {
		t.Fatal(err)
	}
	internal, err := srv.Start("127.0.0.1:0", l.certs.ServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg := l.plan.ASGSyncer(lab.CloudController{
		Public: pub, Internal: internal, Client: client, Secret: secret,
		ClientCert: l.certs.ClientCert, ClientKey: l.certs.ClientKey, PollSeconds: pollSeconds,
	})
	path := writeJSON(t, l.Dir, "policy-server-asg-syncer.json", cfg)
	c := &CC{Server: srv}
	c.syncer = Start(t, filepath.Join(l.Dir, "policy-server-asg-syncer.log"), nil, filepath.Join(l.Bins, "policy-server-asg-syncer"), "-config-file", path)
	deadline := time.Now().Add(20 * time.Second)
	for srv.Requests(cc.List) == 0 {
		if c.syncer.Exited() || time.Now().After(deadline) {
			t.Fatalf("policy-server-asg-syncer never read Cloud Controller: %s", c.syncer.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

// SyncerLog is what the syncer has logged.
func (c *CC) SyncerLog() string { return c.syncer.Output() }

// NetmanEnv is the netman CLI's environment against the lab (the lab's
// env file): the policy servers with the admin token and the agents'
// client pair, every cell's agent debug server, and names (app name →
// guid) as the names file.
func (l *Lab) NetmanEnv(t testing.TB, names map[string]string) map[string]string {
	t.Helper()
	file := writeJSON(t, l.Dir, "apps.json", names)
	cells := make([]lab.CellPlan, len(l.Cells))
	for i, c := range l.Cells {
		cells[i] = c.plan()
	}
	return l.plan.NetmanEnv(AdminToken, file, cells)
}
