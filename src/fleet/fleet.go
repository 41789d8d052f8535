// Package fleet is netman-fleet: a thousand cells on one machine. Each
// simulated cell runs silk-daemon's real start-up and lease poll
// (daemon.Setup on a daemon.FakeSystem) and vxlan-policy-agent's real
// policy cycle (agent.NewPolicyCycle on an nft.Fake: client, long-poll,
// planner, enforcer) against a real silk-controller, policy-server and
// policy-server-internal, each a child process, over mTLS on loopback. A
// workload writes policies through the external API and restarts cells
// and servers; the scenarios (scenarios.go) measure what the issue asks
// and report it printed and as JSON.
package fleet

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/sqldb"
)

// Modes of the agents' policy cycle.
const (
	ModeLongPoll = "long-poll" // netman's: a parked long-poll per cell
	ModePoll     = "poll"      // upstream's: a plain read every poll interval
)

// Options shape a fleet; zero values take the defaults in withDefaults.
type Options struct {
	Cells    int    // simulated cells (1,000)
	Apps     int    // apps, one container each, spread round-robin (30,000)
	Policies int    // policies seeded before the scenarios (60,000)
	Mode     string // ModeLongPoll or ModePoll
	Dir      string // working directory: configs, databases, logs

	PollSeconds      int // the agents' poll_interval (5)
	LeasePollSeconds int // silk-daemon's lease_poll_interval_seconds (30)

	Changes    int           // policy changes measured in scenario 2 (10)
	Restart    int           // cells restarted together in scenario 3 (50)
	Leases     int           // cells of scenario 5 (2,047)
	Idle       time.Duration // steady-state measuring window (30 s)
	Warmup     time.Duration // long-poll mode: wait after convergence before measuring it (30 s)
	SlowDB     time.Duration // latency added to every query in scenario 6 (300 ms)
	SlowFor    time.Duration // how long the database stays slow (20 s)
	StaleAfter time.Duration // a change not enforced by then is stale (30 s)
	// ServerCPUs, when set, pins the server children to these CPUs
	// (taskset's list syntax, e.g. "1"), apart from the simulated cells
	// (run netman-fleet itself under taskset on the others).
	ServerCPUs   string
	Log          io.Writer // progress lines; nil: none
	CellLogLevel lager.LogLevel
}

func (o Options) withDefaults() Options {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Cells, 1000)
	def(&o.Apps, 30*o.Cells)
	def(&o.Policies, 2*o.Apps)
	def(&o.PollSeconds, 5)
	def(&o.LeasePollSeconds, 30)
	def(&o.Changes, 10)
	def(&o.Restart, min(50, o.Cells))
	def(&o.Leases, 2047)
	if o.Mode == "" {
		o.Mode = ModeLongPoll
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defDur(&o.Idle, 30*time.Second)
	defDur(&o.Warmup, 30*time.Second)
	defDur(&o.SlowDB, 300*time.Millisecond)
	defDur(&o.SlowFor, 20*time.Second)
	defDur(&o.StaleAfter, 30*time.Second)
	if o.Log == nil {
		o.Log = io.Discard
	}
	if o.CellLogLevel == 0 {
		o.CellLogLevel = lager.ERROR
	}
	return o
}

// Fleet is the servers and the cells.
type Fleet struct {
	opts Options

	certs                certs
	policyDB, silkDB     sqldb.Config
	internal, ext, silk  *server
	internalURL, silkURL string
	externalURL          string
	token                string
	agentTLS             *tls.Config
	cellLog              lager.Logger
	cellLogFile          *os.File
	http                 *http.Client
	requests             *recorder // the agents' plain requests
	cells                []*cell
	apps                 []app
	policyCountByCell    []int // seeded policies enforced on each cell
	rulesLost            atomicCounter
	startRetries         atomicCounter // cell start-ups retried (startCells)
	converged            time.Time     // when Start's cells had all converged
}

type certs struct{ ca, serverCert, serverKey, clientCert, clientKey string }

// app is one app: its guid, space and the cell of its one container.
type app struct {
	guid, space string
	cell, slot  int
}

// New prepares a fleet in opts.Dir (made if missing).
func New(opts Options) (*Fleet, error) {
	opts = opts.withDefaults()
	if opts.Mode != ModeLongPoll && opts.Mode != ModePoll {
		return nil, fmt.Errorf("mode %q: want %s or %s", opts.Mode, ModeLongPoll, ModePoll)
	}
	if opts.Apps < opts.Cells {
		return nil, fmt.Errorf("%d apps on %d cells: want at least one app per cell", opts.Apps, opts.Cells)
	}
	if opts.Apps/opts.Cells > 250 {
		return nil, fmt.Errorf("%d apps on %d cells: at most 250 containers fit a cell's /24", opts.Apps, opts.Cells)
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, err
	}
	f := &Fleet{opts: opts, requests: newRecorder(), http: &http.Client{Timeout: 2 * time.Minute}}
	for i := range opts.Apps {
		f.apps = append(f.apps, app{
			guid:  fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
			space: fmt.Sprintf("00000000-0000-4000-9000-%012d", i/10),
			cell:  i % opts.Cells, slot: i / opts.Cells,
		})
	}
	return f, nil
}

func (f *Fleet) logf(format string, args ...any) {
	fmt.Fprintf(f.opts.Log, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// Start makes the certificates and databases, starts the three servers,
// seeds the policies and starts every cell, returning once each cell has
// enforced its share of the seeded policies.
func (f *Fleet) Start(ctx context.Context) error {
	dir := f.opts.Dir
	if err := f.makeCerts(); err != nil {
		return err
	}
	f.policyDB = sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(dir, "policy.db"), Timeout: 10}
	f.silkDB = sqldb.Config{Type: sqldb.TypeSQLite, DatabaseName: filepath.Join(dir, "silk.db"), Timeout: 10}
	for _, p := range []string{f.policyDB.DatabaseName, f.silkDB.DatabaseName} {
		for _, s := range []string{"", "-wal", "-shm"} {
			_ = os.Remove(p + s)
		}
	}
	var err error
	if f.silk, err = f.newSilkController("silk-controller", f.silkDB, overlayNetwork, 24); err != nil {
		return err
	}
	if f.ext, err = f.newPolicyServer(); err != nil {
		return err
	}
	if f.internal, err = f.newInternal(); err != nil {
		return err
	}
	f.silkURL = "https://127.0.0.1:" + portOf(f.silk)
	// The external server migrates the schema first.
	for _, s := range []*server{f.ext, f.internal, f.silk} {
		if err := s.start(ctx); err != nil {
			return err
		}
	}
	f.agentTLS, err = mtls.ClientConfig(f.certs.clientCert, f.certs.clientKey, f.certs.ca)
	if err != nil {
		return err
	}
	logFile, err := os.Create(filepath.Join(dir, "cells.log"))
	if err != nil {
		return err
	}
	f.cellLogFile = logFile
	f.cellLog = lager.NewLogger("fleet")
	f.cellLog.RegisterSink(lager.NewWriterSink(logFile, f.opts.CellLogLevel))

	t0 := time.Now()
	if err := f.seed(ctx); err != nil {
		return err
	}
	f.logf("seeded %d policies between %d apps in %s", f.opts.Policies, f.opts.Apps, time.Since(t0).Round(time.Millisecond))

	t0 = time.Now()
	f.cells = make([]*cell, f.opts.Cells)
	for i := range f.cells {
		f.cells[i] = newCell(f, i)
	}
	if err := f.startCells(ctx, f.cells); err != nil {
		return err
	}
	if err := f.waitConverged(ctx, 10*time.Minute); err != nil {
		return err
	}
	f.converged = time.Now()
	f.logf("%d cells converged in %s (%d start-ups retried)", f.opts.Cells, time.Since(t0).Round(time.Millisecond), f.startRetries.load())
	return nil
}

// Stop stops the cells and the servers.
func (f *Fleet) Stop() {
	var wg sync.WaitGroup
	for _, c := range f.cells {
		if c != nil {
			wg.Add(1)
			go func() { defer wg.Done(); c.stop() }()
		}
	}
	wg.Wait()
	for _, s := range []*server{f.internal, f.ext, f.silk} {
		if s != nil {
			s.stop()
		}
	}
	if f.cellLogFile != nil {
		f.cellLogFile.Close()
	}
}

func (f *Fleet) makeCerts() error {
	dir := filepath.Join(f.opts.Dir, "certs")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := mtls.NewCA("netman-fleet")
	if err != nil {
		return err
	}
	f.certs.ca = filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(f.certs.ca, ca.CertPEM(), 0o600); err != nil {
		return err
	}
	hosts := []string{"127.0.0.1", "localhost", mtls.SilkControllerHost, mtls.PolicyServerHost}
	if f.certs.serverCert, f.certs.serverKey, err = ca.WriteFiles(dir, "server", mtls.PolicyServerHost, hosts, mtls.Server); err != nil {
		return err
	}
	f.certs.clientCert, f.certs.clientKey, err = ca.WriteFiles(dir, "client", "vxlan-policy-agent", nil, mtls.Client)
	return err
}

// ports of a server: listen, health, debug, control.
func ports(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func portOf(s *server) string { return s.listen }

func (f *Fleet) newSilkController(name string, db sqldb.Config, network string, prefix int) (*server, error) {
	p, err := ports(4)
	if err != nil {
		return nil, err
	}
	cfg := controller.Config{
		DebugServerPort: p[2], ListenHost: "127.0.0.1", ListenPort: p[0],
		CACertFile: f.certs.ca, ServerCertFile: f.certs.serverCert, ServerKeyFile: f.certs.serverKey,
		Network: network, SubnetPrefixLength: prefix, Database: db,
		LeaseExpirationSeconds: 3600, MetronPort: 3457, HealthCheckPort: p[1],
		MetricsEmitSeconds:        controller.DefaultMetricsEmitSeconds,
		StalenessThresholdSeconds: controller.DefaultStalenessThresholdSeconds,
		LogPrefix:                 "cfnetworking", LogLevel: "error",
	}
	path, err := writeConfig(f.opts.Dir, name, cfg)
	if err != nil {
		return nil, err
	}
	return &server{
		cpus: f.opts.ServerCPUs,
		name: SilkController, cfgPath: path, control: fmt.Sprintf("127.0.0.1:%d", p[3]),
		health: fmt.Sprintf("http://127.0.0.1:%d/health", p[1]), logPath: filepath.Join(f.opts.Dir, name+".log"),
		listen: fmt.Sprint(p[0]),
	}, nil
}

// fleetToken is the admin bearer token of the external API's tokens file.
const fleetToken = "netman-fleet-admin"

func (f *Fleet) newPolicyServer() (*server, error) {
	p, err := ports(3)
	if err != nil {
		return nil, err
	}
	tokens, err := writeConfig(f.opts.Dir, "tokens", map[string]auth.FileEntry{
		fleetToken: {UserName: "admin", Scopes: []string{auth.ScopeAdmin}},
	})
	if err != nil {
		return nil, err
	}
	cfg := external.Config{
		ListenHost: "127.0.0.1", ListenPort: p[0], LogPrefix: "cfnetworking", LogLevel: "error",
		DebugServerHost: "127.0.0.1", DebugServerPort: p[1],
		AuthTokensFile: tokens, ClientConfig: auth.ClientConfig{RequestTimeout: 5}, Database: f.policyDB, DatabaseMigrationTimeout: 60,
		TagLength: 2, MetronAddress: "127.0.0.1:3457", CleanupInterval: 3600, MaxPolicies: 150,
	}
	path, err := writeConfig(f.opts.Dir, PolicyServer, cfg)
	if err != nil {
		return nil, err
	}
	f.externalURL = fmt.Sprintf("http://127.0.0.1:%d", p[0])
	f.token = fleetToken
	return &server{
		cpus: f.opts.ServerCPUs,
		name: PolicyServer, cfgPath: path, control: fmt.Sprintf("127.0.0.1:%d", p[2]),
		health: f.externalURL + "/", logPath: filepath.Join(f.opts.Dir, PolicyServer+".log"), listen: fmt.Sprint(p[0]),
	}, nil
}

func (f *Fleet) newInternal() (*server, error) {
	p, err := ports(4)
	if err != nil {
		return nil, err
	}
	cfg := internalapi.Config{
		LogPrefix: "cfnetworking", LogLevel: "error", ListenHost: "127.0.0.1", InternalListenPort: p[0],
		DebugServerHost: "127.0.0.1", DebugServerPort: p[2], HealthCheckPort: p[1],
		CACertFile: f.certs.ca, ServerCertFile: f.certs.serverCert, ServerKeyFile: f.certs.serverKey,
		Database: f.policyDB, TagLength: 2, MetronAddress: "127.0.0.1:3457", RequestTimeout: 5,
	}
	path, err := writeConfig(f.opts.Dir, PolicyServerInternal, cfg)
	if err != nil {
		return nil, err
	}
	f.internalURL = fmt.Sprintf("https://127.0.0.1:%d", p[0])
	return &server{
		cpus: f.opts.ServerCPUs,
		name: PolicyServerInternal, cfgPath: path, control: fmt.Sprintf("127.0.0.1:%d", p[3]),
		health: fmt.Sprintf("http://127.0.0.1:%d/health", p[1]), logPath: filepath.Join(f.opts.Dir, PolicyServerInternal+".log"),
		listen: fmt.Sprint(p[0]),
	}, nil
}

// policyBody is one policy of the external API's v1 body.
type policyBody struct {
	Source struct {
		ID string `json:"id"`
	} `json:"source"`
	Destination struct {
		ID       string `json:"id"`
		Protocol string `json:"protocol"`
		Ports    struct {
			Start int `json:"start"`
			End   int `json:"end"`
		} `json:"ports"`
	} `json:"destination"`
}

// policy i of the seed: source app i mod apps, a destination chosen by a
// fixed stride, port 8000 + i div apps, so no two are the same.
func (f *Fleet) seedPolicy(i int) (src, dst, port int) {
	n := f.opts.Apps
	return i % n, (i*7919 + i/n + 1) % n, 8000 + i/n
}

func makePolicy(src, dst string, port int) policyBody {
	var p policyBody
	p.Source.ID, p.Destination.ID, p.Destination.Protocol = src, dst, "tcp"
	p.Destination.Ports.Start, p.Destination.Ports.End = port, port
	return p
}

// seed creates the policies through the external API, 1,000 a request,
// and counts each cell's share.
func (f *Fleet) seed(ctx context.Context) error {
	f.policyCountByCell = make([]int, f.opts.Cells)
	batch := make([]policyBody, 0, 1000)
	for i := range f.opts.Policies {
		src, dst, port := f.seedPolicy(i)
		batch = append(batch, makePolicy(f.apps[src].guid, f.apps[dst].guid, port))
		f.policyCountByCell[f.apps[dst].cell]++
		if len(batch) == cap(batch) || i == f.opts.Policies-1 {
			if err := f.writePolicies(ctx, false, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// writePolicies creates (or deletes) policies through the external API.
func (f *Fleet) writePolicies(ctx context.Context, del bool, ps []policyBody) error {
	body, err := json.Marshal(map[string]any{"policies": ps})
	if err != nil {
		return err
	}
	url := f.externalURL + "/networking/v1/external/policies"
	if del {
		url += "/delete"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+f.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s: %s", url, resp.Status, b)
	}
	return nil
}

// overlayNetwork holds 4,096 /24 leases: upstream's default /16 has only
// 255, too few for a thousand cells (docs/operations.md "Sizing").
const overlayNetwork = "10.224.0.0/12"
