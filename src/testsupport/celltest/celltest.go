// Package celltest is the multi-cell harness for end-to-end tests: cells are
// network namespaces on a shared underlay bridge, each running the real
// silk-daemon against one real silk-controller, and containers are made by
// exec'ing the real cni-wrapper-plugin (delegating to silk-cni) with CNI_*
// variables, as Garden does. Everything a Lab makes is removed when its test
// ends.
package celltest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/ports"
)

// Binaries the lab runs, built once per test process by Main.
var Binaries = []string{"silk-controller", "silk-daemon", "silk-teardown", "silk-cni", "cni-wrapper-plugin",
	"policy-server", "policy-server-internal", "vxlan-policy-agent", "iptables-logger"}

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

func build(dir string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", dir + "/"}
	for _, b := range Binaries {
		args = append(args, "./cmd/"+b)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building lab binaries: %v\n%s", err, out)
	}
	return nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the test directory")
		}
		dir = parent
	}
}

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
}

// Lab is one controller and its cells on an underlay bridge.
type Lab struct {
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
}

// Cell is one Diego cell stand-in.
type Cell struct {
	lab        *Lab
	Index      int
	NS         *netnstest.NS
	UnderlayIP string
	Iface      string
	Dir        string
	daemon     *Proc
	agent      *Proc
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
	l := &Lab{t: t, Dir: t.TempDir(), Bins: binDir, opts: opts}
	// A random /24 keeps concurrent labs (other packages' tests) apart.
	l.Prefix = fmt.Sprintf("10.244.%d.", 100+rand.IntN(100))
	l.RootIP = l.Prefix + "1"
	l.certs = mtlstest.NewTestFiles(t)
	l.setupUnderlay()
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

func (l *Lab) setupUnderlay() {
	t := l.t
	l.Bridge = netnstest.UniqueName("nmbr")
	netnstest.Run(t, "ip", "link", "add", l.Bridge, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", l.Bridge).Run() })
	netnstest.Run(t, "ip", "addr", "add", l.RootIP+"/24", "dev", l.Bridge)
	netnstest.Run(t, "ip", "link", "set", l.Bridge, "up")
}

// attach joins ns to the underlay bridge as ifname with ip.
func (l *Lab) attach(ns *netnstest.NS, ifname, ip string) {
	t := l.t
	outside := netnstest.UniqueName("nmu")
	netnstest.Run(t, "ip", "link", "add", outside, "type", "veth", "peer", "name", ifname, "netns", ns.Name)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", outside).Run() })
	netnstest.Run(t, "ip", "link", "set", outside, "master", l.Bridge, "up")
	ns.Run(t, "ip", "addr", "add", ip+"/24", "dev", ifname)
	ns.Run(t, "ip", "link", "set", ifname, "up")
	ns.Run(t, "ip", "route", "add", "default", "via", l.RootIP)
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
	ca := mtlstest.CA(t)
	cert, key, err := ca.Issue(mtls.SilkControllerHost, []string{l.RootIP}, mtls.Server)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := mtls.WriteKeyPair(l.Dir, "controller", cert, key)
	if err != nil {
		t.Fatal(err)
	}
	l.APIPort = ports.Free(t, l.RootIP)
	health := ports.Free(t, "127.0.0.1")
	cfg := map[string]any{
		"debug_server_port": ports.Free(t, "127.0.0.1"), "listen_host": l.RootIP, "listen_port": l.APIPort,
		"ca_cert_file": l.certs.CAFile, "server_cert_file": certFile, "server_key_file": keyFile,
		"network": "10.255.0.0/16", "subnet_prefix_length": 24,
		"database":                 map[string]any{"type": "sqlite", "database_name": filepath.Join(l.Dir, "silk.db"), "timeout": 10},
		"lease_expiration_seconds": 3600, "metron_port": 3457, "health_check_port": health,
		"log_prefix": "cfnetworking", "log_level": "debug",
	}
	path := writeJSON(t, l.Dir, "silk-controller.json", cfg)
	p := Start(t, filepath.Join(l.Dir, "silk-controller.log"), nil, filepath.Join(l.Bins, "silk-controller"), "-config", path)
	waitHTTP(t, p, fmt.Sprintf("http://127.0.0.1:%d/health", health))
}

func (l *Lab) newCell(i int) *Cell {
	t := l.t
	c := &Cell{lab: l, Index: i, NS: netnstest.New(t, fmt.Sprintf("c%d", i)), UnderlayIP: l.Prefix + strconv.Itoa(10+i), Iface: "ul0"}
	c.Dir = filepath.Join(l.Dir, fmt.Sprintf("cell%d", i))
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

func (c *Cell) writeDaemonConfig() string {
	l := c.lab
	return writeJSON(l.t, c.Dir, "silk-daemon.json", map[string]any{
		"underlay_ip": c.UnderlayIP, "subnet_prefix_length": 24, "overlay_network": "10.255.0.0/16",
		"health_check_port": 23954, "vtep_name": "silk-vtep",
		"connectivity_server_url": fmt.Sprintf("https://%s:%d", l.RootIP, l.APIPort),
		"ca_cert_file":            l.certs.CAFile, "client_cert_file": l.certs.ClientCert, "client_key_file": l.certs.ClientKey,
		"vni": 1, "vtep_port": 4789, "poll_interval": l.opts.PollIntervalSeconds, "debug_server_port": 22233,
		"datastore": filepath.Join(c.Dir, "silk-store.json"), "partition_tolerance_seconds": 3600,
		"client_timeout_seconds": 5, "metron_port": 3457, "log_prefix": "cfnetworking", "log_level": "debug",
	})
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
func (c *Cell) NetworkInfo() (map[string]any, error) {
	var info map[string]any
	err := c.NS.Do(func() error {
		conn, err := net.DialTimeout("tcp", "127.0.0.1:23954", time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
			return err
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(conn)
		resp := buf.String()
		if !strings.HasPrefix(resp, "HTTP/1.0 200") && !strings.HasPrefix(resp, "HTTP/1.1 200") {
			return fmt.Errorf("daemon answered %q", resp)
		}
		return json.Unmarshal([]byte(resp[strings.Index(resp, "\r\n\r\n")+4:]), &info)
	})
	return info, err
}

// OverlaySubnet is the cell's lease.
func (c *Cell) OverlaySubnet() string {
	info, err := c.NetworkInfo()
	if err != nil {
		c.lab.t.Fatalf("cell %d network info: %v", c.Index, err)
	}
	return info["overlay_subnet"].(string)
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
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func waitHTTP(t testing.TB, p *Proc, url string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if p.Exited() {
			t.Fatalf("%s exited during start-up: %s", p.name, p.Output())
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never answered %s: %s", p.name, url, p.Output())
}

// Proc is a process the lab started; it is stopped (by PID) when the test ends.
type Proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
	mu   sync.Mutex
	err  error
}

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
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var cmd *exec.Cmd
	if ns != nil {
		cmd = ns.Command(bin, args...) // ip netns exec execs bin: the PID is bin's
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", bin, err)
	}
	p := &Proc{name: filepath.Base(bin), cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
		f.Close()
	}()
	return p
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s) by its PID.
func (p *Proc) stop(t testing.TB) {
	if !p.Exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if t.Failed() {
		t.Logf("%s output:\n%s", p.name, p.Output())
	}
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

// Wait waits for the process to end.
func (p *Proc) Wait(t testing.TB, timeout time.Duration) error {
	select {
	case <-p.done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s did not exit within %v", p.name, timeout)
		return nil
	}
}

// Output is what the process has logged so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.log.Name())
	return string(b)
}
