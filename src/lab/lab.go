// Package lab is "netman in a box": on one machine, as root, it builds the
// multi-cell lab that the end-to-end tests use — an underlay bridge, the
// control plane (silk-controller, policy-server, policy-server-internal,
// NATS and service-discovery-controller) in the root namespace, cells as
// network namespaces each running silk-daemon, vxlan-policy-agent,
// bosh-dns-adapter, a DNS front end in bosh-dns's place and a route
// emitter, and app containers made through garden-external-networker and
// the CNI chain — then acts out the "cats and dogs" policy demo, the
// frontend calling the backend by name (backend.apps.internal), and tears
// it all down again.
//
// Every namespace, link, process, database and file outside its directory
// the lab makes is recorded in a ledger (State) in its directory before it
// is made, so that Down, in the same or any later process, removes exactly
// those and nothing else. The config rendering (Plan) and processes (Proc)
// here are shared with the test harness src/testsupport/celltest; the
// namespace plumbing is src/namespace.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/sqldb"
	"github.com/netman-release/netman/src/standin/app"
)

// Options shape a lab. Zero values take the defaults.
type Options struct {
	Dir   string // all the lab's files; default .lab
	Bins  string // the built binaries (Binaries); default bin
	Cells int    // default 2
	// Apps is the number of app containers, at least 2: "frontend" on
	// cell 1 calls "backend" on cell 2; the others ("app-3", ...) only
	// serve, placed round-robin.
	Apps int
	DB   string // sqlite (default), postgres or mysql
	// Backend is every cell's enforcement_backend: BackendIPTables
	// (default) or BackendNFTables.
	Backend string
	Names   string // prefix of every namespace, link and database name; default "nmlab"
	// Underlay is the underlay /24 as its first three octets plus a dot;
	// default "10.244.0.".
	Underlay string
	// IPv6 makes every cell dual-stack on the default IPv6 overlay
	// (overlay6.DefaultNetwork). The overlay still runs over the IPv4
	// underlay; the underlay also gets an IPv6 ULA /64 (Underlay6Prefix)
	// for containers' IPv6 egress to the outside service.
	IPv6      bool
	Ports     Ports         // zero: DefaultPorts
	CallEvery time.Duration // how often the frontend calls; default 20 ms
	Log       io.Writer     // progress lines; default io.Discard
}

func (o *Options) defaults() error {
	if o.Dir == "" {
		o.Dir = ".lab"
	}
	if o.Bins == "" {
		o.Bins = "bin"
	}
	for _, p := range []*string{&o.Dir, &o.Bins} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return err
		}
		*p = abs
	}
	if o.Cells == 0 {
		o.Cells = 2
	}
	if o.Apps == 0 {
		o.Apps = 2
	}
	if o.DB == "" {
		o.DB = DBSQLite
	}
	if o.Backend == "" {
		o.Backend = BackendIPTables
	}
	if o.Names == "" {
		o.Names = "nmlab"
	}
	if o.Underlay == "" {
		o.Underlay = "10.244.0."
	}
	if o.Ports == (Ports{}) {
		o.Ports = DefaultPorts()
	}
	if o.CallEvery == 0 {
		o.CallEvery = 20 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	switch {
	case o.Cells < 1 || o.Cells > 200:
		return fmt.Errorf("--cells %d: want 1 to 200", o.Cells)
	case o.Apps < 2 || o.Apps > 200:
		return fmt.Errorf("--apps %d: want 2 to 200", o.Apps)
	case o.DB != DBSQLite && o.DB != DBPostgres && o.DB != DBMySQL:
		return fmt.Errorf("--db %s: want sqlite, postgres or mysql", o.DB)
	case !slices.Contains(Backends, o.Backend):
		return fmt.Errorf("--backend %s: want iptables or nftables", o.Backend)
	case !validNames.MatchString(o.Names):
		return fmt.Errorf("names prefix %q: want a lower-case letter then up to 9 letters or digits", o.Names)
	case !validUnderlay.MatchString(o.Underlay):
		return fmt.Errorf("underlay %q: want the first three octets of a /24 and a dot (10.244.0.)", o.Underlay)
	}
	return nil
}

var (
	validNames    = regexp.MustCompile(`^[a-z][a-z0-9]{0,9}$`)
	validUnderlay = regexp.MustCompile(`^(\d{1,3}\.){3}$`)
)

// Tools are the host programs the lab and its daemons run.
var Tools = []string{"ip", "iptables", "iptables-restore", "iptables-save"}

// NFTTools are the programs the nftables backend adds to Tools.
var NFTTools = []string{"nft"}

// MissingTools lists the Tools (and, for the nftables backend, the
// NFTTools) not on PATH.
func MissingTools(backend string) []string {
	var missing []string
	tools := Tools
	if backend == BackendNFTables {
		tools = append(slices.Clone(tools), NFTTools...)
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t); err != nil {
			missing = append(missing, t)
		}
	}
	return missing
}

// Up builds a lab. On an error it returns the state made so far (Down
// removes it) with the error.
func Up(ctx context.Context, o Options) (*State, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := preflight(o); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	st := &State{
		Dir: o.Dir, Bins: o.Bins, Names: o.Names, DB: o.DB, Token: randomHex(16), Bridge: o.Names + "-br", Started: time.Now(),
		Plan: Plan{
			Dir: o.Dir, Bins: o.Bins, Prefix: o.Underlay, Ports: o.Ports, PollIntervalSeconds: 1, TokensFile: filepath.Join(o.Dir, "tokens.json"),
			DNSServers: []string{DNSServer}, Backend: o.Backend,
			// DENY_ lines, so that iptables-logger's flow log shows denied
			// connections too.
			C2CLogging: true,
		},
	}
	if o.IPv6 {
		st.Plan.IPv6 = overlay6.DefaultNetwork
		st.Plan.Underlay6 = Underlay6Prefix(o.Underlay)
	}
	for i := 1; i <= o.Cells; i++ {
		st.Plan.UICells = append(st.Plan.UICells, st.Plan.Cell(i).AgentDebugURL())
	}
	if err := st.Save(); err != nil {
		return nil, err
	}
	u := &upper{st: st, o: o, ctx: ctx}
	for _, step := range []func() error{u.controlPlane, u.cloudController, u.discoveryControlPlane, u.cells, u.apps, u.egress, u.emitters, u.env} {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if err := step(); err != nil {
			return st, err
		}
	}
	return st, nil
}

func preflight(o Options) error {
	if os.Geteuid() != 0 {
		return errors.New("the lab needs root (network namespaces, iptables, mounts): run it with sudo")
	}
	if m := MissingTools(o.Backend); len(m) > 0 {
		pkgs := "iproute2 iptables"
		if o.Backend == BackendNFTables {
			pkgs += " nftables"
		}
		return fmt.Errorf("missing on PATH: %s (Debian: apt-get install %s)", strings.Join(m, " "), pkgs)
	}
	if m := MissingBinaries(o.Bins, Binaries...); len(m) > 0 {
		return fmt.Errorf("missing in %s: %s (build them: CGO_ENABLED=0 go build -o bin/ ./cmd/...)", o.Bins, strings.Join(m, " "))
	}
	if _, err := Load(o.Dir); err == nil {
		return fmt.Errorf("a lab is already running in %s (scripts/lab down first)", o.Dir)
	}
	if namespace.LinkExists(o.Names + "-br") {
		return fmt.Errorf("link %s-br exists already: another lab with names prefix %s?", o.Names, o.Names)
	}
	// A port taken on 127.0.0.1 (or on every address) would make a daemon
	// exit, or worse, another server answer its readiness check. The
	// servers on the underlay address only clash with one listening on
	// every address (a NATS server of the machine's own on 127.0.0.1:4222
	// is no bother).
	pt := o.Ports
	for _, port := range []int{pt.ControllerHealth, pt.ControllerDebug, pt.External, pt.ExternalDebug, pt.InternalHealth, pt.InternalDebug, pt.DiscoveryLogLevel, pt.CC, pt.CCInternal, pt.CCAdmin} {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return fmt.Errorf("port %d is taken on this machine (the lab uses upstream's ports: see docs/lab.md): %w", port, err)
		}
		l.Close()
	}
	for _, port := range []int{pt.ControllerAPI, pt.Internal, pt.Discovery, pt.NATS, EgressPort} {
		if listeningOnAll(port) {
			return fmt.Errorf("port %d is taken on every address of this machine (the lab uses upstream's ports: see docs/lab.md)", port)
		}
	}
	out, err := namespace.Run("ip", "-4", "-o", "addr", "show")
	if err != nil {
		return err
	}
	if strings.Contains(out, "inet "+o.Underlay) {
		return fmt.Errorf("an address in %s0/24 is already in use on this machine: pick another underlay", o.Underlay)
	}
	if out, err := namespace.Run("ip", "-4", "route", "show", "root", o.Underlay+"0/24"); err != nil || strings.TrimSpace(out) != "" {
		return fmt.Errorf("%s0/24 is already routed on this machine (%s): pick another underlay", o.Underlay, strings.TrimSpace(out))
	}
	if o.IPv6 {
		u6 := Underlay6Prefix(o.Underlay)
		out, err := namespace.Run("ip", "-6", "-o", "addr", "show")
		if err != nil {
			return err
		}
		if strings.Contains(out, "inet6 "+u6) {
			return fmt.Errorf("an address in %s/64 is already in use on this machine: pick another underlay", u6)
		}
	}
	return nil
}

// listeningOnAll tells whether a TCP server listens on port on the
// wildcard address (IPv4, or IPv6 which may cover IPv4) in this namespace.
func listeningOnAll(port int) bool {
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) < 4 || fields[3] != "0A" { // LISTEN
				continue
			}
			addr, hexPort, ok := strings.Cut(fields[1], ":")
			p, err := strconv.ParseUint(hexPort, 16, 16)
			if ok && err == nil && int(p) == port && strings.Trim(addr, "0") == "" {
				return true
			}
		}
	}
	return false
}

type upper struct {
	st  *State
	o   Options
	ctx context.Context
}

func (u *upper) say(format string, args ...any) { fmt.Fprintf(u.o.Log, "==> "+format+"\n", args...) }

// spawn starts a detached daemon and records it.
func (u *upper) spawn(ns *namespace.NS, log, bin string, args ...string) (*Proc, error) {
	return u.spawnAs(bin, ns, log, bin, args...)
}

// spawnAs is spawn with the name status shows.
func (u *upper) spawnAs(name string, ns *namespace.NS, log, bin string, args ...string) (*Proc, error) {
	return u.spawnSpec(name, Spec{Log: log, NS: ns, Bin: bin, Args: args})
}

// spawnSpec starts s (its Bin one of the lab's binaries) detached, and
// records it.
func (u *upper) spawnSpec(name string, s Spec) (*Proc, error) {
	s.Bin, s.Detach = filepath.Join(u.st.Bins, s.Bin), true
	p, err := Spawn(s)
	if err != nil {
		return nil, err
	}
	p.Name = name
	return p, u.st.Made(Resource{Kind: KindProc, Proc: p})
}

// netns creates a namespace, recorded first.
func (u *upper) netns(name string) (*namespace.NS, error) {
	if err := u.st.Made(Resource{Kind: KindNetns, Name: name}); err != nil {
		return nil, err
	}
	return namespace.Add(name)
}

func (u *upper) controlPlane() error {
	st, p := u.st, &u.st.Plan
	u.say("certificates (netman-certs tree) in %s", filepath.Join(st.Dir, "certs"))
	certDir := filepath.Join(st.Dir, "certs")
	if _, err := mtls.WriteTree(certDir, mtls.TreeOptions{ExtraHosts: []string{p.RootIP()}}); err != nil {
		return err
	}
	p.Certs = TreeCerts(certDir)

	u.say("databases (%s)", st.DB)
	for _, db := range []struct {
		name string
		cfg  *sqldb.Config
	}{{"policy", &p.PolicyDB}, {"silk", &p.SilkDB}} {
		name := st.Names + "_" + db.name
		cfg, err := newDatabase(u.ctx, st.DB, st.Dir, name)
		if err != nil {
			return fmt.Errorf("creating the %s database: %w", db.name, err)
		}
		*db.cfg = cfg
		if st.DB != DBSQLite {
			if err := st.Made(Resource{Kind: KindDatabase, Name: name, DB: cfg}); err != nil {
				return err
			}
		}
	}

	u.say("underlay bridge %s, %s0/24; this namespace is %s on it", st.Bridge, p.Prefix, p.RootIP())
	if err := st.Made(Resource{Kind: KindLink, Name: st.Bridge}); err != nil {
		return err
	}
	if err := namespace.AddBridge(st.Bridge, p.RootIP()+"/24"); err != nil {
		return err
	}
	if p.Underlay6 != "" {
		u.say("IPv6 underlay %s/64; this namespace is %s on it", p.Underlay6, p.RootIP6())
		// Per link, so it goes with the bridge.
		if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+st.Bridge+"/disable_ipv6", []byte("0\n"), 0o644); err != nil {
			return err
		}
		if _, err := namespace.Run("ip", "-6", "addr", "add", p.RootIP6()+"/64", "dev", st.Bridge, "nodad"); err != nil {
			return err
		}
	}

	if _, err := WriteJSON(st.Dir, "tokens.json", Tokens(st.Token)); err != nil {
		return err
	}
	for _, d := range []struct {
		bin, flag string
		cfg       any // the daemon's Config
		ready     string
	}{
		{"silk-controller", "-config", p.SilkController(), fmt.Sprintf("http://127.0.0.1:%d/health", p.Ports.ControllerHealth)},
		{"policy-server", "-config-file", p.PolicyServer(), p.ExternalURL() + "/"},
		{"policy-server-internal", "-config-file", p.PolicyServerInternal(), fmt.Sprintf("http://127.0.0.1:%d/health", p.Ports.InternalHealth)},
	} {
		u.say("starting %s (log %s.log)", d.bin, filepath.Join(st.Dir, d.bin))
		path, err := WriteJSON(st.Dir, d.bin+".json", d.cfg)
		if err != nil {
			return err
		}
		proc, err := u.spawn(nil, filepath.Join(st.Dir, d.bin+".log"), d.bin, d.flag, path)
		if err != nil {
			return err
		}
		if err := WaitHTTP(proc, d.ready, 30*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func (u *upper) cells() error {
	st, p := u.st, &u.st.Plan
	var nss []*namespace.NS
	u.say("cells enforce policy with %s (enforcement_backend of every agent and cni-wrapper-plugin)", p.Backend)
	// LOG rules in the cells' namespaces print nothing without it; down
	// puts the value found back.
	u.say("%s = 1 (iptables-logger reads the cells' LOG lines from /dev/kmsg)", strings.TrimPrefix(NFLogAllNetns, "/proc/sys/"))
	if err := u.sysctl(NFLogAllNetns, "1"); err != nil {
		return err
	}
	for i := 1; i <= u.o.Cells; i++ {
		c := p.Cell(i)
		name := fmt.Sprintf("%s-cell%d", st.Names, i)
		u.say("cell %d: namespace %s, underlay %s", i, name, c.UnderlayIP)
		ns, err := u.netns(name)
		if err != nil {
			return err
		}
		nss = append(nss, ns)
		outside := fmt.Sprintf("%s-c%d", st.Names, i)
		if err := st.Made(Resource{Kind: KindLink, Name: outside}); err != nil {
			return err
		}
		if err := namespace.Attach(st.Bridge, ns, outside, "ul0", c.UnderlayIP+"/24", p.RootIP()); err != nil {
			return err
		}
		// Cells forward between their containers and the underlay. A closed
		// TCP connection leaves conntrack (and reaches iptables-logger's
		// flow log) a second after its close instead of TIME_WAIT's 120 s.
		sets := []string{"echo 1 > /proc/sys/net/ipv4/ip_forward", "echo " + strconv.Itoa(cellTimeWaitSeconds) + " > " + tcpTimeWait}
		if c.UnderlayIP6 != "" {
			sets = append(sets, "echo 1 > /proc/sys/net/ipv6/conf/all/forwarding")
		}
		for _, set := range sets {
			if _, err := namespace.Run("ip", "netns", "exec", name, "sh", "-c", set); err != nil {
				return err
			}
		}
		if c.UnderlayIP6 != "" {
			u.say("cell %d: IPv6 underlay %s, default route via %s", i, c.UnderlayIP6, p.RootIP6())
			for _, args := range [][]string{
				{"-6", "addr", "add", c.UnderlayIP6 + "/64", "dev", "ul0", "nodad"},
				{"-6", "route", "add", "default", "via", p.RootIP6(), "dev", "ul0"},
			} {
				if _, err := ns.Run("ip", args...); err != nil {
					return err
				}
			}
		}
		if err := writeCellFiles(p, c); err != nil {
			return err
		}
		st.Cells = append(st.Cells, CellState{Index: i, NS: name, UnderlayIP: c.UnderlayIP, UnderlayIP6: c.UnderlayIP6, Dir: c.Dir})
		daemon, err := u.spawn(ns, filepath.Join(c.Dir, "silk-daemon.log"), "silk-daemon", "-config", filepath.Join(c.Dir, "silk-daemon.json"))
		if err != nil {
			return err
		}
		var subnet string
		err = WaitFor(daemon, 30*time.Second, func() error {
			info, err := NetworkInfo(ns)
			if err == nil {
				subnet, _ = info["overlay_subnet"].(string)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("silk-daemon on cell %d: %w", i, err)
		}
		st.Cells[i-1].Subnet = subnet
		u.say("cell %d: silk-daemon holds %s", i, subnet)
	}
	for i, ns := range nss {
		c := p.Cell(i + 1)
		u.say("cell %d: starting vxlan-policy-agent", i+1)
		agent, err := u.spawn(ns, filepath.Join(c.Dir, "vxlan-policy-agent.log"), "vxlan-policy-agent", "-config-file", filepath.Join(c.Dir, "vxlan-policy-agent.json"))
		if err != nil {
			return err
		}
		if err := WaitFor(agent, 30*time.Second, func() error {
			return httpOK(ns.HTTP(http.MethodGet, "http://127.0.0.1:8721/log-level", ""))
		}); err != nil {
			return fmt.Errorf("vxlan-policy-agent on cell %d: %w", i+1, err)
		}
		if err := u.logger(ns, c); err != nil {
			return err
		}
		if err := u.cellDiscovery(ns, c); err != nil {
			return err
		}
	}
	return st.Save()
}

// The kernel settings the lab's flow logs need.
const (
	// NFLogAllNetns lets LOG rules in namespaces other than the initial
	// one print (host-wide); the lab sets it to 1 and down restores it.
	NFLogAllNetns = "/proc/sys/net/netfilter/nf_log_all_netns"
	// tcpTimeWait is conntrack's TIME_WAIT timeout in a cell's namespace.
	tcpTimeWait         = "/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait"
	cellTimeWaitSeconds = 1
)

// sysctl writes value to the /proc/sys file path in this namespace,
// recording the value it had first so that down restores it.
func (u *upper) sysctl(path, value string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("the kernel has no %s: %w", path, err)
	}
	if err := u.st.Made(Resource{Kind: KindSysctl, Name: path, Config: strings.TrimSpace(string(old))}); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(value+"\n"), 0o644)
}

// logger starts the cell's iptables-logger in the cell's namespace, where
// conntrack sees the cell's forwarded connections, and waits until it
// listens for conntrack's events.
func (u *upper) logger(ns *namespace.NS, c CellPlan) error {
	u.say("cell %d: starting iptables-logger (flow log %s)", c.Index, c.IPTablesLog())
	proc, err := u.spawn(ns, filepath.Join(c.Dir, "iptables-logger.log"), "iptables-logger", "-config-file", filepath.Join(c.Dir, "iptables-logger.json"))
	if err != nil {
		return err
	}
	if err := WaitFor(proc, 30*time.Second, func() error {
		if !strings.Contains(proc.Output(), "flow-logger.listening") {
			return errors.New("not listening for conntrack events yet")
		}
		return nil
	}); err != nil {
		return fmt.Errorf("iptables-logger on cell %d: %w", c.Index, err)
	}
	return nil
}

// writeCellFiles writes a cell's configs and the directories they name.
func writeCellFiles(p *Plan, c CellPlan) error {
	for _, d := range []string{c.Dir, filepath.Dir(c.Datastore()), c.CNIConfigDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		dir, name string
		v         any // the daemon's Config
	}{
		{c.Dir, "silk-daemon.json", p.SilkDaemon(c)},
		{c.Dir, "vxlan-policy-agent.json", p.LabAgent(c)},
		{c.Dir, "iptables-logger.json", p.LabIPTablesLogger(c)},
		{c.CNIConfigDir(), ConflistName, p.Conflist(c)},
		{c.GardenDir(), "adapter.json", p.Adapter(c)},
		{c.Dir, filepath.Base(c.AdapterConfig()), p.BoshDNSAdapter()},
	} {
		if _, err := WriteJSON(f.dir, f.name, f.v); err != nil {
			return err
		}
	}
	_, err := WriteJSON(c.Dir, filepath.Base(c.HandlersFile()), p.Handlers())
	return err
}

// appCell is where app k (from 1) runs: frontend on cell 1, backend on
// cell 2, the rest round-robin.
func appCell(k, cells int) int { return (k-1)%cells + 1 }

func appName(k int) string {
	switch k {
	case 1:
		return "frontend"
	case 2:
		return "backend"
	}
	return fmt.Sprintf("app-%d", k)
}

func (u *upper) apps() error {
	st := u.st
	if err := os.MkdirAll(filepath.Join(st.Dir, "apps"), 0o755); err != nil {
		return err
	}
	space, org := uuid.NewString(), uuid.NewString()
	// The callees first: the frontend is told the backend's address.
	order := make([]int, 0, u.o.Apps)
	for k := 2; k <= u.o.Apps; k++ {
		order = append(order, k)
	}
	order = append(order, 1)
	st.Apps = make([]AppState, u.o.Apps)
	for _, k := range order {
		a := &st.Apps[k-1]
		*a = AppState{Name: appName(k), GUID: uuid.NewString(), Handle: uuid.NewString(), Cell: appCell(k, u.o.Cells), Port: app.Port, Space: space}
		a.NS = st.Names + "-" + a.Name
		a.Log = filepath.Join(st.Dir, "apps", a.Name+".log")
		a.Route = AppRoute(a.Name)
		args := []string{"app", "--name", a.Name, "--listen", fmt.Sprintf(":%d", app.Port)}
		if k == 1 {
			// By name, through the resolver the container is given.
			a.Calls = fmt.Sprintf("http://%s:%d/", st.Apps[1].Route, app.Port)
			args = append(args, "--call", a.Calls, "--every", u.o.CallEvery.String(), "--dns", st.Plan.DNSServers[0])
		}
		if err := u.app(a, space, org, args); err != nil {
			return fmt.Errorf("app %s: %w", a.Name, err)
		}
		u.say("app %s: cell %d, %s, namespace %s", a.Name, a.Cell, a.IP, a.NS)
	}
	if st.Plan.IPv6 != "" {
		// The IPv6 demo's c2c caller: the frontend's container calling
		// the backend's IPv6 address.
		fe, be := &st.Apps[0], &st.Apps[1]
		c := &Caller{Calls: fmt.Sprintf("http://[%s]:%d/", be.IP6, be.Port), Log: filepath.Join(st.Dir, "apps", "frontend6.log")}
		if err := u.caller("frontend IPv6 caller", fe.NS, "frontend6", app.Port+2, c); err != nil {
			return err
		}
		st.IPv6 = &IPv6State{C2C: *c}
		u.say("app frontend: also calls %s every %v", c.Calls, u.o.CallEvery)
	}
	return st.Save()
}

// caller starts a calling app named name in namespace ns, listening on
// port, calling c.Calls; it records when it started in c.UpAt.
func (u *upper) caller(what, ns, name string, port int, c *Caller) error {
	args := []string{"app", "--name", name, "--listen", fmt.Sprintf(":%d", port), "--call", c.Calls, "--every", u.o.CallEvery.String()}
	if _, err := u.spawnAs(what, namespace.Named(ns), c.Log, "netman-lab", args...); err != nil {
		return err
	}
	c.UpAt = time.Now()
	return nil
}

// EgressPort is where the lab's outside service listens, on the underlay
// address of the root namespace.
const EgressPort = 9443

// egress starts the ASG demo's pair: an outside service in this namespace
// on the underlay, and inside the frontend's container a second caller
// calling it. No security group allows it yet, so its calls are rejected
// by the frontend's asg chain until the demo binds one.
func (u *upper) egress() error {
	st := u.st
	fe := st.App("frontend")
	service := fmt.Sprintf("%s:%d", st.Plan.RootIP(), EgressPort)
	u.say("outside service on %s (reachable from apps only through a security group)", service)
	if _, err := u.spawnAs("outside service", nil, filepath.Join(st.Dir, "apps", "outside.log"), "netman-lab", "app", "--name", "outside", "--listen", service); err != nil {
		return err
	}
	e := &EgressState{Service: service, Caller: Caller{Calls: "http://" + service + "/", Log: filepath.Join(st.Dir, "apps", "frontend-egress.log")}}
	if err := u.caller("frontend egress caller", fe.NS, "frontend-egress", app.Port+1, &e.Caller); err != nil {
		return err
	}
	st.Egress = e
	u.say("app frontend: also calls %s every %v", e.Calls, u.o.CallEvery)
	if st.IPv6 != nil && st.Plan.RootIP6() != "" {
		// The same over IPv6: the service on the bridge's IPv6 address,
		// reached from the frontend's IPv6 address masqueraded to its
		// cell's.
		service6 := net.JoinHostPort(st.Plan.RootIP6(), strconv.Itoa(EgressPort))
		u.say("outside service on %s too", service6)
		if _, err := u.spawnAs("outside service IPv6", nil, filepath.Join(st.Dir, "apps", "outside6.log"), "netman-lab", "app", "--name", "outside6", "--listen", service6); err != nil {
			return err
		}
		e6 := &EgressState{Service: service6, Caller: Caller{Calls: "http://" + service6 + "/", Log: filepath.Join(st.Dir, "apps", "frontend-egress6.log")}}
		if err := u.caller("frontend IPv6 egress caller", fe.NS, "frontend-egress6", app.Port+3, &e6.Caller); err != nil {
			return err
		}
		st.IPv6.Egress = e6
		u.say("app frontend: also calls %s every %v", e6.Calls, u.o.CallEvery)
	}
	return st.Save()
}

// app starts the app's process in a fresh namespace and gives its PID to
// garden-external-networker, as Garden does with a container's init process.
func (u *upper) app(a *AppState, space, org string, args []string) error {
	st := u.st
	ns, err := u.netns(a.NS)
	if err != nil {
		return err
	}
	proc, err := u.spawnAs("app "+a.Name, ns, a.Log, "netman-lab", args...)
	if err != nil {
		return err
	}
	a.PID = proc.PID
	// `ip netns exec` switches namespace after the fork: until it has, the
	// PID's namespace is this one, and the CNI chain must never see that.
	if err := WaitFor(proc, 10*time.Second, func() error { return ns.Holds(proc.PID) }); err != nil {
		return err
	}
	cell := st.Cells[a.Cell-1]
	adapter := filepath.Join(cell.Dir, "garden-cni", "adapter.json")
	if err := st.Made(Resource{Kind: KindContainer, Name: a.Handle, NS: cell.NS, Config: adapter}); err != nil {
		return err
	}
	in := map[string]any{
		"pid": proc.PID,
		"properties": map[string]string{
			"app_id": a.GUID, "policy_group_id": a.GUID, "space_id": space, "org_id": org,
			"container_workload": "app", "ports": strconv.Itoa(a.Port),
		},
		"netin": []map[string]int{{"host_port": 0, "container_port": a.Port}},
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		return err
	}
	out, err := st.garden(u.ctx, cell.NS, adapter, "up", a.Handle, stdin)
	if err != nil {
		return err
	}
	res, err := ParseGardenUp(out)
	if err != nil {
		return err
	}
	if a.IP = res.ContainerIP; a.IP == "" {
		return fmt.Errorf("garden-external-networker up printed no container ip: %s", out)
	}
	a.IP6 = res.ContainerIPv6
	if st.Plan.IPv6 != "" && a.IP6 == "" {
		return fmt.Errorf("garden-external-networker up printed no container ipv6 on a dual-stack cell: %s", out)
	}
	if len(res.MappedPorts) > 0 {
		a.HostPort = res.MappedPorts[0].HostPort
	}
	a.UpAt = time.Now()
	// The wrapper's dns_servers come back for Garden to write into the
	// container's resolv.conf.
	if a.DNSServers = res.DNSServers; !slices.Equal(a.DNSServers, st.Plan.DNSServers) {
		return fmt.Errorf("garden-external-networker up gave dns_servers %q, want %q", a.DNSServers, st.Plan.DNSServers)
	}
	return u.writeResolvConf(a.NS, a.DNSServers)
}

// Garden runs garden-external-networker (bin) for one container, inside
// the cell's network namespace but in this mount namespace (unlike `ip
// netns exec`, which would take the bind mount of the container's
// namespace away when it exits), and returns what it printed. Its stderr
// goes to stderr (when not nil) and into a failure's error.
func Garden(ctx context.Context, bin string, cell *namespace.NS, adapter, action, handle string, stdin []byte, stderr io.Writer) (string, error) {
	var stdout, errOut strings.Builder
	cmd := exec.CommandContext(ctx, bin, "--configFile="+adapter, "--action", action, "--handle", handle)
	cmd.Stdin = strings.NewReader(string(stdin))
	cmd.Stdout = &stdout
	cmd.Stderr = &errOut
	if stderr != nil {
		cmd.Stderr = io.MultiWriter(&errOut, stderr)
	}
	// The child starts in the namespace of the thread that forks it.
	if err := cell.Do(cmd.Start); err != nil {
		return "", fmt.Errorf("garden-external-networker --action %s: %w", action, err)
	}
	if err := cmd.Wait(); err != nil {
		return stdout.String(), fmt.Errorf("garden-external-networker --action %s --handle %s: %v: %s", action, handle, err, strings.TrimSpace(errOut.String()))
	}
	return stdout.String(), nil
}

// GardenOutput is what garden-external-networker printed for `up`.
type GardenOutput struct {
	ContainerIP   string // garden.network.container-ip
	ContainerIPv6 string // garden.network.container-ipv6 (dual-stack cells only)
	HostIP        string // garden.network.host-ip
	Interface     string // garden.network.interface
	MappedPorts   []MappedPort
	DNSServers    []string
	SearchDomains []string
}

// MappedPort is one entry of garden.network.mapped-ports (Go's default keys).
type MappedPort struct{ HostPort, ContainerPort int }

// ParseGardenUp parses `up`'s stdout; mapped-ports is a JSON string in it.
func ParseGardenUp(stdout string) (GardenOutput, error) {
	var out struct {
		Properties    map[string]string `json:"properties"`
		DNSServers    []string          `json:"dns_servers"`
		SearchDomains []string          `json:"search_domains"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		return GardenOutput{}, fmt.Errorf("up printed %q: %v", stdout, err)
	}
	r := GardenOutput{
		ContainerIP: out.Properties["garden.network.container-ip"], HostIP: out.Properties["garden.network.host-ip"],
		ContainerIPv6: out.Properties["garden.network.container-ipv6"],
		Interface:     out.Properties["garden.network.interface"], DNSServers: out.DNSServers, SearchDomains: out.SearchDomains,
		MappedPorts: []MappedPort{},
	}
	if err := json.Unmarshal([]byte(out.Properties["garden.network.mapped-ports"]), &r.MappedPorts); err != nil {
		return GardenOutput{}, fmt.Errorf("mapped-ports in %q: %v", stdout, err)
	}
	return r, nil
}

// garden runs garden-external-networker in the named cell namespace, its
// stderr appended to the cell's garden-external-networker.log.
func (st *State) garden(ctx context.Context, cellNS, adapter, action, handle string, stdin []byte) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	log, err := os.OpenFile(filepath.Join(filepath.Dir(filepath.Dir(adapter)), "garden-external-networker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", err
	}
	defer log.Close()
	fmt.Fprintf(log, "%s --action %s --handle %s\n", time.Now().Format(time.RFC3339Nano), action, handle)
	ns := namespace.Named(cellNS)
	return Garden(ctx, filepath.Join(st.Bins, "garden-external-networker"), ns, adapter, action, handle, stdin, log)
}

// env writes what the netman CLI reads: apps.json (name → app guid) and an
// env file to source.
func (u *upper) env() error {
	st := u.st
	names := map[string]string{}
	for _, a := range st.Apps {
		names[a.Name] = a.GUID
	}
	apps, err := WriteJSON(st.Dir, "apps.json", names)
	if err != nil {
		return err
	}
	var cells []CellPlan
	for _, c := range st.Cells {
		cells = append(cells, st.Plan.Cell(c.Index))
	}
	vars := st.Plan.NetmanEnv(st.Token, apps, cells)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# netman lab: source me, then bin/netman list (or trace, graph, ui)\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%s\n", k, vars[k])
	}
	env := b.String()
	envFile := filepath.Join(st.Dir, "env")
	if err := os.WriteFile(envFile, []byte(env), 0o600); err != nil {
		return err
	}
	// Under sudo, the user who asked for the lab may use the CLI against it.
	uid, errU := strconv.Atoi(os.Getenv("SUDO_UID"))
	gid, errG := strconv.Atoi(os.Getenv("SUDO_GID"))
	if errU == nil && errG == nil {
		for _, f := range []string{envFile, apps} {
			if err := os.Chown(f, uid, gid); err != nil {
				return err
			}
		}
	}
	return st.Save()
}

// WaitFor retries check until it succeeds, p exits or timeout passes.
func WaitFor(p *Proc, timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("%s exited during start-up:\n%s", p.Name, p.Tail(20))
		}
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %v: %v\n%s", p.Name, timeout, err, p.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// WaitHTTP waits for url to answer 200.
func WaitHTTP(p *Proc, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	return WaitFor(p, timeout, func() error {
		resp, err := client.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return httpOK(resp.StatusCode, "", nil)
	})
}

func httpOK(code int, body string, err error) error {
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("answered %d %s", code, body)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
