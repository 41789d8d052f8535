package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/netman-release/netman/src/discovery"
	"github.com/netman-release/netman/src/discovery/adapter"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/namespace"
	"github.com/netman-release/netman/src/standin/boshdns"
	"github.com/netman-release/netman/src/standin/routeemitter"
)

// App service discovery in the lab, laid out as on a real deployment:
// NATS and service-discovery-controller with the control plane; on every
// cell bosh-dns-adapter on 127.0.0.1:8053 and, in bosh-dns's place, the
// lab's DNS front end on DNSServer, which containers get as their resolver
// (the wrapper's dns_servers); and a route emitter per cell registering
// the cell's apps as <app>.apps.internal and <index>.<app>.apps.internal.
const (
	// DNSServer is the cells' resolver for containers: where their DNS
	// front end (boshdns) listens.
	DNSServer = boshdns.DefaultAddress
	// AppsDomain is the internal domain apps are registered under.
	AppsDomain = "apps.internal"
	// AdapterPort and AdapterLogLevelPort are bosh-dns-adapter's, on
	// 127.0.0.1 inside each cell.
	AdapterPort, AdapterLogLevelPort = 8053, 8066
	// EmitIntervalSeconds is the route emitters' interval
	// (routeemitter.DefaultInterval). The controller is rendered from it
	// as its BOSH job renders it (pruning, resume delay and warm-up all
	// equal to it), with staleness at three intervals as cf-deployment's
	// 180 s against 60 s.
	EmitIntervalSeconds = int(routeemitter.DefaultInterval / time.Second)
)

// AppRoute is an app's internal route, <name>.apps.internal.
func AppRoute(app string) string { return app + "." + AppsDomain }

// NATSURL is the lab's NATS server, on the underlay.
func (p *Plan) NATSURL() string { return fmt.Sprintf("nats://%s:%d", p.RootIP(), p.Ports.NATS) }

// DiscoveryURL is service-discovery-controller's mTLS API, on the underlay.
func (p *Plan) DiscoveryURL() string {
	return fmt.Sprintf("https://%s:%d", p.RootIP(), p.Ports.Discovery)
}

// ServiceDiscoveryController is service-discovery-controller.json.
func (p *Plan) ServiceDiscoveryController() sdcontroller.Config {
	return sdcontroller.Config{
		Address: p.RootIP(), Port: strconv.Itoa(p.Ports.Discovery), Index: "0",
		ServerCert: p.Certs.DiscoveryCert, ServerKey: p.Certs.DiscoveryKey, CACert: p.Certs.CA,
		MetronPort: metronPort, MetricsEmitSeconds: 10,
		LogLevelAddress: "127.0.0.1", LogLevelPort: p.Ports.DiscoveryLogLevel,
		StalenessThresholdSeconds: 3 * EmitIntervalSeconds, PruningIntervalSeconds: EmitIntervalSeconds,
		ResumePruningDelaySeconds: EmitIntervalSeconds, WarmDurationSeconds: EmitIntervalSeconds,
		ReadHeaderTimeout: discovery.Duration(30 * time.Second),
		Nats:              sdcontroller.NatsConfig{Hosts: []sdcontroller.NatsHost{{Hostname: p.RootIP(), Port: p.Ports.NATS}}},
	}
}

// BoshDNSAdapter is a cell's bosh-dns-adapter.json: 127.0.0.1:8053 in the
// cell, the controller over the underlay (its certificate carries RootIP).
func (p *Plan) BoshDNSAdapter() adapter.Config {
	return adapter.Config{
		Address: "127.0.0.1", Port: strconv.Itoa(AdapterPort), ReadHeaderTimeout: discovery.Duration(5 * time.Second),
		ServiceDiscoveryControllerAddress: p.RootIP(), ServiceDiscoveryControllerPort: strconv.Itoa(p.Ports.Discovery),
		ClientCert: p.Certs.AdapterCert, ClientKey: p.Certs.AdapterKey, CACert: p.Certs.CA,
		MetronPort: metronPort, MetricsEmitSeconds: 10,
		LogLevelAddress: "127.0.0.1", LogLevelPort: AdapterLogLevelPort,
		InternalServiceMeshDomains: []string{}, InternalRouteVIPRange: "127.128.0.0/9",
	}
}

// Handlers is the bosh-dns handlers.json the bosh-dns-adapter job renders.
func (p *Plan) Handlers() []boshdns.Handler {
	return boshdns.Handlers(fmt.Sprintf("http://127.0.0.1:%d", AdapterPort), AppsDomain)
}

// AdapterSpec is how the lab starts a cell's bosh-dns-adapter (Bin is the
// name in the lab's bin directory; the caller sets NS). The adapter logs
// every line to stdout and its errors to stderr as well, upstream's two
// sinks: stdout goes to bosh-dns-adapter.log and stderr to
// bosh-dns-adapter.stderr.log, as a BOSH job's two files, so that each line
// is in the log once, not twice.
func (c CellPlan) AdapterSpec() Spec {
	return Spec{
		Log:    filepath.Join(c.Dir, "bosh-dns-adapter.log"),
		Stderr: filepath.Join(c.Dir, "bosh-dns-adapter.stderr.log"),
		Bin:    "bosh-dns-adapter",
		Args:   []string{"-c", c.AdapterConfig()},
	}
}

// AdapterConfig and HandlersFile are where a cell's discovery files go.
func (c CellPlan) AdapterConfig() string { return filepath.Join(c.Dir, "bosh-dns-adapter.json") }

// HandlersFile is the cell's bosh-dns handlers.json.
func (c CellPlan) HandlersFile() string { return filepath.Join(c.Dir, "handlers.json") }

// discoveryControlPlane starts NATS and service-discovery-controller.
func (u *upper) discoveryControlPlane() error {
	st, p := u.st, &u.st.Plan
	u.say("starting nats on %s (log %s)", p.NATSURL(), filepath.Join(st.Dir, "nats.log"))
	nats, err := u.spawnAs("nats", nil, filepath.Join(st.Dir, "nats.log"), "netman-lab", "nats", "--listen", net.JoinHostPort(p.RootIP(), strconv.Itoa(p.Ports.NATS)))
	if err != nil {
		return err
	}
	if err := WaitFor(nats, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(p.RootIP(), strconv.Itoa(p.Ports.NATS)), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		return err
	}
	const sdc = "service-discovery-controller"
	u.say("starting %s on %s (log %s.log)", sdc, p.DiscoveryURL(), filepath.Join(st.Dir, sdc))
	path, err := WriteJSON(st.Dir, sdc+".json", p.ServiceDiscoveryController())
	if err != nil {
		return err
	}
	proc, err := u.spawn(nil, filepath.Join(st.Dir, sdc+".log"), sdc, "-c", path)
	if err != nil {
		return err
	}
	client, err := p.DiscoveryClient()
	if err != nil {
		return err
	}
	return WaitFor(proc, 30*time.Second, func() error {
		_, err := Routes(client, p.DiscoveryURL())
		return err
	})
}

// DiscoveryClient is an HTTP client with bosh-dns-adapter's certificate.
func (p *Plan) DiscoveryClient() (*http.Client, error) {
	cfg, err := mtls.ClientConfig(p.Certs.AdapterCert, p.Certs.AdapterKey, p.Certs.CA)
	if err != nil {
		return nil, err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, TLSHandshakeTimeout: 5 * time.Second}}, nil
}

// Routes is the controller's table: GET /routes, name → IPs.
func Routes(client *http.Client, base string) (map[string][]string, error) {
	resp, err := client.Get(base + "/routes")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Addresses []struct {
			Hostname string   `json:"hostname"`
			IPs      []string `json:"ips"`
		} `json:"addresses"`
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/routes answered %s", base, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, a := range body.Addresses {
		out[a.Hostname] = a.IPs
	}
	return out, nil
}

// cellDiscovery starts bosh-dns-adapter and the DNS front end in a cell.
func (u *upper) cellDiscovery(ns *namespace.NS, c CellPlan) error {
	u.say("cell %d: bosh-dns-adapter on 127.0.0.1:%d, DNS on %s", c.Index, AdapterPort, DNSServer)
	s := c.AdapterSpec()
	s.NS = ns
	adapter, err := u.spawnSpec("bosh-dns-adapter", s)
	if err != nil {
		return err
	}
	if err := WaitFor(adapter, 30*time.Second, func() error {
		return httpOK(ns.HTTP(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/health", AdapterPort), ""))
	}); err != nil {
		return fmt.Errorf("bosh-dns-adapter on cell %d: %w", c.Index, err)
	}
	// The address lives on the cell's loopback and goes with the namespace.
	if _, err := namespace.Run("ip", "netns", "exec", ns.Name, "ip", "addr", "add", DNSServer+"/32", "dev", "lo"); err != nil {
		return err
	}
	dns, err := u.spawnAs("dns", ns, filepath.Join(c.Dir, "dns.log"), "netman-lab", "dns",
		"--listen", net.JoinHostPort(DNSServer, "53"), "--handlers", c.HandlersFile())
	if err != nil {
		return err
	}
	// NXDOMAIN for a name outside apps.internal: up, without asking the adapter.
	if err := WaitFor(dns, 10*time.Second, func() error {
		return ns.Do(func() error {
			_, err := boshdns.Resolver{Server: DNSServer, Timeout: 200 * time.Millisecond}.LookupA(context.Background(), "lab.invalid")
			if errors.Is(err, boshdns.ErrNoSuchHost) {
				return nil
			}
			return fmt.Errorf("lab.invalid: %v", err)
		})
	}); err != nil {
		return fmt.Errorf("dns on cell %d: %w", c.Index, err)
	}
	return nil
}

// emitters starts a route emitter on every cell with apps, registering
// them, and waits until the controller has every route.
func (u *upper) emitters() error {
	st, p := u.st, &u.st.Plan
	want := map[string]string{}
	for _, cell := range st.Cells {
		args := []string{"route-emitter", "--nats", p.NATSURL()}
		for _, a := range st.Apps {
			if a.Cell == cell.Index {
				args = append(args, "--instance", fmt.Sprintf("%s,0,%s,%s", a.Route, a.IP, a.GUID))
				want[boshdns.FQDN(a.Route)] = a.IP
			}
		}
		if len(args) == 3 {
			continue
		}
		ns := namespace.Named(cell.NS)
		u.say("cell %d: route emitter registering %d app(s) on %s", cell.Index, (len(args)-3)/2, p.NATSURL())
		if _, err := u.spawnAs("route-emitter", ns, filepath.Join(cell.Dir, "route-emitter.log"), "netman-lab", args...); err != nil {
			return err
		}
	}
	client, err := p.DiscoveryClient()
	if err != nil {
		return err
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		routes, err := Routes(client, p.DiscoveryURL())
		missing := ""
		for name, ip := range want {
			if err == nil && !slices.Contains(routes[name], ip) {
				missing = name + " → " + ip
			}
		}
		if err == nil && missing == "" {
			return st.Save()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("service-discovery-controller lacks %s after 15s (%v): see %s and the cells' route-emitter.log", missing, err, filepath.Join(st.Dir, "service-discovery-controller.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// writeResolvConf gives an app container dns_servers as its resolv.conf,
// as Garden does: /etc/netns/<ns>/resolv.conf, which `ip netns exec`
// mounts over /etc/resolv.conf (so `ip netns exec <ns> getent hosts`
// resolves like the app). Every file and directory made is in the ledger.
func (u *upper) writeResolvConf(ns string, servers []string) error {
	if len(servers) == 0 {
		return nil
	}
	dir := filepath.Join(EtcNetns, ns)
	for _, d := range []string{EtcNetns, dir} {
		if _, err := os.Stat(d); err == nil {
			continue
		}
		if err := u.st.Made(Resource{Kind: KindFile, Name: d}); err != nil {
			return err
		}
		if err := os.Mkdir(d, 0o755); err != nil {
			return err
		}
	}
	path := filepath.Join(dir, "resolv.conf")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists already: not the lab's", path)
	}
	if err := u.st.Made(Resource{Kind: KindFile, Name: path}); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("# netman lab: dns_servers from garden-external-networker\n")
	for _, s := range servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// EtcNetns is where `ip netns exec` finds per-namespace /etc files.
var EtcNetns = "/etc/netns"

// removeFile undoes a KindFile: a file, or a directory unless others put
// something in it since.
func removeFile(path string) error {
	err := os.Remove(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
		if entries, rerr := os.ReadDir(path); rerr == nil && len(entries) > 0 {
			return nil // shared with another lab's namespaces
		}
	}
	return err
}
