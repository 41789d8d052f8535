// Package celltest is the multi-cell harness for end-to-end tests: cells are
// network namespaces on a shared underlay bridge, each running the real
// silk-daemon against one real silk-controller, and containers are made by
// exec'ing the real cni-wrapper-plugin (delegating to silk-cni) with CNI_*
// variables, as Garden does. Everything a Lab makes is removed when its test
// ends.
package celltest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/lab"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/ports"
	"github.com/netman-release/netman/src/testsupport/testtier"
)

// Binaries the lab runs, built once per test process by Main.
var Binaries = []string{"silk-controller", "silk-daemon", "silk-teardown", "silk-cni", "cni-wrapper-plugin",
	"policy-server", "policy-server-internal", "vxlan-policy-agent", "iptables-logger", "garden-external-networker",
	"policy-server-asg-syncer"}

var binDir string

// Main builds the binaries into a temporary directory, runs the tests and
// removes the directory. Use it from TestMain.
func Main(m interface{ Run() int }) int {
	dir, err := os.MkdirTemp("", "netman-bins-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if os.Geteuid() == 0 {
		if err := build(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binDir = dir
	}
	return m.Run()
}

func build(dir string) error { return lab.Build(dir, Binaries...) }

// The enforcement backends (Options.Backend).
const (
	IPTables = lab.BackendIPTables
	NFTables = lab.BackendNFTables
)

// Options shape a lab.
type Options struct {
	Cells               int
	PollIntervalSeconds int
	// Policy starts policy-server and policy-server-internal, and a real
	// vxlan-policy-agent in every cell (instead of the fake force endpoint).
	Policy bool
	// C2CLogging turns on c2c logging in the wrapper (DENY_C2C_) and the
	// agents (OK_).
	C2CLogging bool
	// ASGLogging turns on ASG logging in the wrapper and the agents
	// (DENY_ for denied egress, OK_ for accepted).
	ASGLogging bool
	// Backend is every cell's enforcement_backend: IPTables (also "") or
	// NFTables (netman's inet netman table; the test needs nft).
	Backend string
	// IPv6 makes the cells dual-stack on the default IPv6 overlay
	// (overlay6.DefaultNetwork), except those in IPv4OnlyCells (indexes
	// from 1): a rollout with both kinds.
	IPv6          bool
	IPv4OnlyCells []int
}

// Lab is one controller and its cells on an underlay bridge.
type Lab struct {
	// Backend is every cell's enforcement_backend (the default spelled out).
	Backend string
	t       testing.TB
	Dir     string
	Bins    string
	Bridge  string
	Prefix  string // "10.244.N." — the underlay /24
	RootIP  string // the test namespace's address on the underlay
	APIPort int
	Cells   []*Cell
	Policy  *PolicyServers // with Options.Policy
	certs   *mtlstest.Files
	opts    Options
	plan    lab.Plan // the configs, rendered as the lab renders them
}

// Cell is one Diego cell stand-in.
type Cell struct {
	lab        *Lab
	Index      int
	NS         *netnstest.NS
	UnderlayIP string
	Iface      string
	Dir        string
	// IPv4Only is a cell left IPv4-only in a dual-stack lab.
	IPv4Only bool
	daemon   *Proc
	agent    *Proc
}

// New starts a controller and opts.Cells cells, each with its daemon up and
// its lease acquired.
func New(t testing.TB, opts Options) *Lab {
	t.Helper()
	netnstest.RequireRoot(t)
	if binDir == "" {
		t.Fatal("celltest.Main must run from TestMain")
	}
	if opts.Cells == 0 {
		opts.Cells = 3
	}
	if opts.PollIntervalSeconds == 0 {
		opts.PollIntervalSeconds = 1
	}
	switch opts.Backend {
	case "":
		opts.Backend = lab.BackendIPTables
	case lab.BackendIPTables:
	case lab.BackendNFTables:
		if _, err := exec.LookPath("nft"); err != nil {
			testtier.Unavailable(t, "the nftables backend needs nft (Debian: apt-get install nftables)")
		}
	default:
		t.Fatalf("celltest: backend %q: want %s or %s", opts.Backend, lab.BackendIPTables, lab.BackendNFTables)
	}
	l := &Lab{t: t, Dir: t.TempDir(), Bins: binDir, opts: opts, Backend: opts.Backend}
	l.certs = mtlstest.NewTestFiles(t)
	l.setupUnderlay()
	l.plan = lab.Plan{
		Dir: l.Dir, Bins: l.Bins, Prefix: l.Prefix,
		Certs: lab.Certs{
			CA: l.certs.CAFile, DaemonCert: l.certs.ClientCert, DaemonKey: l.certs.ClientKey,
			AgentCert: l.certs.ClientCert, AgentKey: l.certs.ClientKey,
		},
		SilkDB: lab.SQLite(filepath.Join(l.Dir, "silk.db")), PolicyDB: lab.SQLite(filepath.Join(l.Dir, "policy.db")),
		PollIntervalSeconds: opts.PollIntervalSeconds, C2CLogging: opts.C2CLogging, ASGLogging: opts.ASGLogging,
		Backend:    opts.Backend,
		TokensFile: filepath.Join(l.Dir, "tokens.json"),
	}
	if opts.IPv6 {
		l.plan.IPv6 = overlay6.DefaultNetwork
	}
	l.startController()
	if opts.Policy {
		l.startPolicyServers()
	}
	for i := 1; i <= opts.Cells; i++ {
		l.Cells = append(l.Cells, l.newCell(i))
	}
	for _, c := range l.Cells {
		c.StartDaemon()
		if opts.Policy {
			c.StartAgent(nil)
		}
	}
	return l
}

// underlayMu makes picking a free underlay and taking it one step for the
// labs of one test process (parallel subtests).
var underlayMu sync.Mutex

func (l *Lab) setupUnderlay() {
	t := l.t
	l.Bridge = netnstest.UniqueName("nmbr")
	t.Cleanup(func() { _ = namespace.DeleteLink(l.Bridge) })
	underlayMu.Lock()
	defer underlayMu.Unlock()
	// A random /24 not on any link here keeps concurrent labs (parallel
	// subtests, other packages' tests) apart.
	used, err := namespace.Run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		t.Fatal(err)
	}
	for try := 0; ; try++ {
		l.Prefix = fmt.Sprintf("10.244.%d.", 100+rand.IntN(100))
		if !strings.Contains(used, "inet "+l.Prefix) || try == 20 {
			break
		}
	}
	l.RootIP = l.Prefix + "1"
	if err := namespace.AddBridge(l.Bridge, l.RootIP+"/24"); err != nil {
		t.Fatal(err)
	}
}

// attach joins ns to the underlay bridge as ifname with ip.
func (l *Lab) attach(ns *netnstest.NS, ifname, ip string) {
	outside := netnstest.UniqueName("nmu")
	l.t.Cleanup(func() { _ = namespace.DeleteLink(outside) })
	if err := namespace.Attach(l.Bridge, ns.NS, outside, ifname, ip+"/24", l.RootIP); err != nil {
		l.t.Fatal(err)
	}
}

// NewHost is a plain namespace on the underlay (a destination "outside" the
// overlay) at Prefix+host.
func (l *Lab) NewHost(host int) (*netnstest.NS, string) {
	ns := netnstest.New(l.t, "h")
	ip := l.Prefix + strconv.Itoa(host)
	l.attach(ns, "ul0", ip)
	return ns, ip
}

func (l *Lab) startController() {
	t := l.t
	l.plan.Certs.ControllerCert, l.plan.Certs.ControllerKey = issueServerCert(t, l.Dir, "controller", mtls.SilkControllerHost, l.RootIP)
	l.APIPort = ports.Free(t, l.RootIP)
	l.plan.Ports.ControllerAPI = l.APIPort
	l.plan.Ports.ControllerHealth = ports.Free(t, "127.0.0.1")
	l.plan.Ports.ControllerDebug = ports.Free(t, "127.0.0.1")
	path := writeJSON(t, l.Dir, "silk-controller.json", l.plan.SilkController())
	p := Start(t, filepath.Join(l.Dir, "silk-controller.log"), nil, filepath.Join(l.Bins, "silk-controller"), "-config", path)
	waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/health", l.plan.Ports.ControllerHealth))
}

// issueServerCert writes a server pair for host (and ip) from the test CA.
func issueServerCert(t testing.TB, dir, name, host, ip string) (certFile, keyFile string) {
	cert, key, err := mtlstest.CA(t).Issue(host, []string{ip}, mtls.Server)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err = mtls.WriteKeyPair(dir, name, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func (l *Lab) newCell(i int) *Cell {
	t := l.t
	cp := l.plan.Cell(i)
	c := &Cell{lab: l, Index: i, NS: netnstest.New(t, fmt.Sprintf("c%d", i)), UnderlayIP: cp.UnderlayIP, Iface: "ul0", Dir: cp.Dir,
		IPv4Only: slices.Contains(l.opts.IPv4OnlyCells, i)}
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l.attach(c.NS, c.Iface, c.UnderlayIP)
	// Cells forward between containers and the underlay.
	c.NS.Run(t, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
	if !l.opts.Policy {
		startFakeAgent(t, c.NS)
	}
	return c
}

// DaemonConfigPath is the cell's silk-daemon config file.
func (c *Cell) DaemonConfigPath() string { return filepath.Join(c.Dir, "silk-daemon.json") }

// plan is the cell's place in the lab's plan.
func (c *Cell) plan() lab.CellPlan {
	return lab.CellPlan{Index: c.Index, Dir: c.Dir, UnderlayIP: c.UnderlayIP, IPv4Only: c.IPv4Only}
}

func (c *Cell) writeDaemonConfig() string {
	return writeJSON(c.lab.t, c.Dir, "silk-daemon.json", c.lab.plan.SilkDaemon(c.plan()))
}

// StartDaemon starts the cell's silk-daemon and waits for its endpoint.
func (c *Cell) StartDaemon() {
	t := c.lab.t
	path := c.writeDaemonConfig()
	c.daemon = Start(t, filepath.Join(c.Dir, "silk-daemon.log"), c.NS, filepath.Join(c.lab.Bins, "silk-daemon"), "-config", path)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if c.daemon.Exited() {
			t.Fatalf("silk-daemon on cell %d exited: %s", c.Index, c.daemon.Output())
		}
		if _, err := c.NetworkInfo(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("silk-daemon on cell %d never served its endpoint: %s", c.Index, c.daemon.Output())
}

// KillDaemon ends the cell's silk-daemon with SIGKILL (a crash).
func (c *Cell) KillDaemon() {
	c.daemon.Signal(syscall.SIGKILL)
	c.daemon.Wait(c.lab.t, 10*time.Second)
}

// StopDaemon ends the cell's silk-daemon with SIGTERM.
func (c *Cell) StopDaemon() {
	c.daemon.Signal(syscall.SIGTERM)
	c.daemon.Wait(c.lab.t, 10*time.Second)
}

// Teardown runs silk-teardown in the cell (release the lease, delete the VTEP).
func (c *Cell) Teardown() string {
	out, err := c.NS.Command(filepath.Join(c.lab.Bins, "silk-teardown"), "-config", c.DaemonConfigPath()).CombinedOutput()
	if err != nil {
		c.lab.t.Fatalf("silk-teardown on cell %d: %v: %s", c.Index, err, out)
	}
	return string(out)
}

// NetworkInfo fetches the daemon's {"overlay_subnet","mtu"} from inside the cell.
func (c *Cell) NetworkInfo() (map[string]any, error) { return lab.NetworkInfo(c.NS.NS) }

// OverlaySubnet is the cell's lease.
func (c *Cell) OverlaySubnet() string {
	info, err := c.NetworkInfo()
	if err != nil {
		c.lab.t.Fatalf("cell %d network info: %v", c.Index, err)
	}
	return info["overlay_subnet"].(string)
}

// Routes6 lists the cell's IPv6 routes on silk-vtep (`ip -6 route show dev silk-vtep`).
func (c *Cell) Routes6() string {
	out, _ := c.NS.Command("ip", "-6", "route", "show", "dev", "silk-vtep").CombinedOutput()
	return string(out)
}

// Routes lists the cell's routes on silk-vtep (`ip route show dev silk-vtep`).
func (c *Cell) Routes() string {
	out, _ := c.NS.Command("ip", "-4", "route", "show", "dev", "silk-vtep").CombinedOutput()
	return string(out)
}

// startFakeAgent answers the policy agent's force endpoints inside ns the
// way an agent with ASG syncing disabled does, until the agent exists.
func startFakeAgent(t testing.TB, ns *netnstest.NS) {
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:8722"); return err }); err != nil {
		t.Fatalf("fake agent: %v", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/force-policy-poll-cycle", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/force-asgs-for-container", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) })
	mux.HandleFunc("/force-orphaned-asgs-cleanup", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusMethodNotAllowed) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
}

func writeJSON(t testing.TB, dir, name string, v any) string {
	path, err := lab.WriteJSON(dir, name, v)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func waitHTTP(t testing.TB, p *Proc, url string) {
	if err := lab.WaitHTTP(p.p, url, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// Proc is a process the lab started; it is stopped (by PID) when the test ends.
type Proc struct{ p *lab.Proc }

// Start runs bin (inside ns when not nil) with output to logPath; it is
// stopped when the test ends.
func Start(t testing.TB, logPath string, ns *netnstest.NS, bin string, args ...string) *Proc {
	t.Helper()
	p := startProc(t, logPath, ns, bin, args...)
	t.Cleanup(func() { p.stop(t) })
	return p
}

// startProc runs bin; the caller arranges for it to be stopped.
func startProc(t testing.TB, logPath string, ns *netnstest.NS, bin string, args ...string) *Proc {
	t.Helper()
	s := lab.Spec{Log: logPath, Bin: bin, Args: args}
	if ns != nil {
		s.NS = ns.NS
	}
	p, err := lab.Spawn(s)
	if err != nil {
		t.Fatal(err)
	}
	return &Proc{p: p}
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s) by its PID.
func (p *Proc) stop(t testing.TB) {
	if err := p.p.Stop(10 * time.Second); err != nil {
		t.Error(err)
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", p.p.Name, p.Output())
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool { return p.p.Exited() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		_ = p.p.Signal(s)
	}
}

// Wait waits for the process to end.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	err, ok := p.p.WaitTimeout(timeout)
	if !ok {
		t.Fatalf("%s did not exit within %v", p.p.Name, timeout)
	}
	return err
}

// Output is what the process has logged so far.
func (p *Proc) Output() string { return p.p.Output() }
