package lab

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/agent"
	"github.com/netman-release/netman/src/cniwrapper"
	adapterconfig "github.com/netman-release/netman/src/discovery/adapter"
	"github.com/netman-release/netman/src/discovery/sdcontroller"
	"github.com/netman-release/netman/src/gardennet"
	"github.com/netman-release/netman/src/iptableslogger"
	"github.com/netman-release/netman/src/mtls"
	"github.com/netman-release/netman/src/policyserver/asgsyncer"
	"github.com/netman-release/netman/src/policyserver/auth"
	"github.com/netman-release/netman/src/policyserver/external"
	"github.com/netman-release/netman/src/policyserver/internalapi"
	silkcni "github.com/netman-release/netman/src/silk/cni"
	"github.com/netman-release/netman/src/silk/controller"
	"github.com/netman-release/netman/src/silk/daemon"
	"github.com/netman-release/netman/src/silk/overlay6"
	"github.com/netman-release/netman/src/standin/boshdns"
)

// TestPlanConfigsLoad: every config the lab writes passes its daemon's
// own loader, so the lab never drifts from what the daemons accept.
func TestPlanConfigsLoad(t *testing.T) {
	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	p := &Plan{
		Dir: dir, Bins: dir, Prefix: "10.244.7.", Ports: DefaultPorts(), PollIntervalSeconds: 1,
		PolicyDB: SQLite(filepath.Join(dir, "policy.db")), SilkDB: SQLite(filepath.Join(dir, "silk.db")),
		TokensFile: filepath.Join(dir, "tokens.json"), DNSServers: []string{DNSServer},
	}
	if _, err := mtls.WriteTree(certDir, mtls.TreeOptions{ExtraHosts: []string{p.RootIP()}}); err != nil {
		t.Fatal(err)
	}
	p.Certs = TreeCerts(certDir)
	write := func(dir, name string, v any) string {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path, err := WriteJSON(dir, name, v)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	write(dir, "tokens.json", Tokens("secret"))
	c := p.Cell(2)
	if c.UnderlayIP != "10.244.7.12" || c.Dir != filepath.Join(dir, "cell2") {
		t.Errorf("cell 2: %+v", c)
	}
	if err := writeCellFiles(p, c); err != nil {
		t.Fatal(err)
	}

	if _, err := controller.LoadConfig(write(dir, "silk-controller.json", p.SilkController())); err != nil {
		t.Errorf("silk-controller: %v", err)
	}
	if _, err := external.LoadConfig(write(dir, "policy-server.json", p.PolicyServer())); err != nil {
		t.Errorf("policy-server: %v", err)
	}
	if _, err := internalapi.LoadConfig(write(dir, "policy-server-internal.json", p.PolicyServerInternal())); err != nil {
		t.Errorf("policy-server-internal: %v", err)
	}
	if _, err := daemon.LoadConfig(filepath.Join(c.Dir, "silk-daemon.json")); err != nil {
		t.Errorf("silk-daemon: %v", err)
	}
	if _, err := agent.LoadConfig(filepath.Join(c.Dir, "vxlan-policy-agent.json")); err != nil {
		t.Errorf("vxlan-policy-agent: %v", err)
	}
	adapter, err := gardennet.LoadConfig(filepath.Join(c.GardenDir(), "adapter.json"))
	if err != nil {
		t.Fatalf("adapter.json: %v", err)
	}
	if adapter.CniConfigDir != c.CNIConfigDir() || adapter.StartPort != 61000 || adapter.TotalPorts != 5000 || adapter.ProxyPort != 15001 {
		t.Errorf("adapter.json: %+v", adapter)
	}
	list, err := gardennet.LoadNetworkConfig(adapter.CniConfigDir, io.Discard)
	if err != nil || list == nil || len(list.Plugins) != 1 {
		t.Fatalf("conflist: %v %+v", err, list)
	}
	// libcni gives the plugin the list's name and version.
	var plugin map[string]any
	if err := json.Unmarshal(list.Plugins[0].Bytes, &plugin); err != nil {
		t.Fatal(err)
	}
	plugin["name"], plugin["cniVersion"] = list.Name, list.CNIVersion
	b, _ := json.Marshal(plugin)
	wrapper, err := cniwrapper.LoadConfig(b)
	if err != nil {
		t.Fatalf("cni-wrapper-plugin: %v", err)
	}
	if wrapper.InstanceAddress != c.UnderlayIP || wrapper.Datastore != c.Datastore() || wrapper.IPTablesLockFile != adapter.IPTablesLockFile {
		t.Errorf("wrapper: %+v", wrapper)
	}
	if dns, err := cniwrapper.LocalDNSServers(wrapper.DNSServers); err != nil || len(dns) != 1 || dns[0].String() != DNSServer {
		t.Errorf("wrapper dns_servers %q: want the cell's DNS front end, which it opens INPUT to", wrapper.DNSServers)
	}

	sdc, err := sdcontroller.LoadConfig(write(dir, "service-discovery-controller.json", p.ServiceDiscoveryController()))
	if err != nil {
		t.Errorf("service-discovery-controller: %v", err)
	}
	if sdc.Address != p.RootIP() || sdc.StalenessThresholdSeconds <= sdc.ResumePruningDelaySeconds || sdc.NatsServers()[0] != p.NATSURL() {
		t.Errorf("service-discovery-controller: %+v", sdc)
	}
	dnsAdapter, err := adapterconfig.LoadConfig(c.AdapterConfig())
	if err != nil {
		t.Errorf("bosh-dns-adapter: %v", err)
	}
	if "https://"+dnsAdapter.ServiceDiscoveryControllerAddress+":"+dnsAdapter.ServiceDiscoveryControllerPort != p.DiscoveryURL() {
		t.Errorf("bosh-dns-adapter dials %s:%s, want %s", dnsAdapter.ServiceDiscoveryControllerAddress, dnsAdapter.ServiceDiscoveryControllerPort, p.DiscoveryURL())
	}
	if hs, err := boshdns.LoadHandlers(c.HandlersFile()); err != nil || len(hs) != 1 || hs[0].Domain != "apps.internal." || hs[0].Source.URL != "http://127.0.0.1:8053" {
		t.Errorf("handlers.json: %v %+v", err, hs)
	}
	// silk-cni reads the wrapper's delegate.
	delegate, err := json.Marshal(wrapper.Delegate)
	if err != nil {
		t.Fatal(err)
	}
	if silk, err := silkcni.ParseNetConf(delegate); err != nil || silk.Validate() != nil || silk.DaemonPort != 23954 || silk.Datastore != filepath.Join(c.Dir, "silk-store.json") {
		t.Errorf("silk-cni delegate %s: %v %+v", delegate, err, silk)
	}

	if _, err := auth.LoadTokensFile(filepath.Join(dir, "tokens.json")); err != nil {
		t.Errorf("tokens.json: %v", err)
	}
	syncer, err := asgsyncer.LoadConfig(write(dir, "policy-server-asg-syncer.json", p.ASGSyncer(CloudController{
		Public: p.CCPublicAddr(), Internal: p.CCInternalAddr(), Client: ccClientID, Secret: ccClientSecret,
		ClientCert: p.Certs.AgentCert, ClientKey: p.Certs.AgentKey, PollSeconds: ASGPollIntervalSeconds,
	})))
	if err != nil {
		t.Errorf("policy-server-asg-syncer: %v", err)
	}
	if syncer.UAABaseURL() != "https://127.0.0.1:9024" || syncer.CCURL != "https://127.0.0.1:9024" || syncer.Database != p.PolicyDB {
		t.Errorf("policy-server-asg-syncer: %+v", syncer)
	}
	logger, err := iptableslogger.LoadConfig(write(c.Dir, "iptables-logger.json", p.IPTablesLogger(c, filepath.Join(c.Dir, "iptables.log"))))
	if err != nil {
		t.Errorf("iptables-logger: %v", err)
	}
	if logger.ContainerMetadataFile != wrapper.Datastore || logger.HostIP != c.UnderlayIP {
		t.Errorf("iptables-logger: %+v", logger)
	}
	// The lab's logger writes flow records where its agent serves them from.
	labLogger, err := iptableslogger.LoadConfig(write(c.Dir, "iptables-logger.json", p.LabIPTablesLogger(c)))
	if err != nil {
		t.Errorf("lab iptables-logger: %v", err)
	}
	if !labLogger.EnableFlowLogs || labLogger.OutputLogFile != c.IPTablesLog() || p.LabAgent(c).FlowLogFile != c.IPTablesLog() || p.Agent(c).FlowLogFile != "" {
		t.Errorf("lab iptables-logger %+v, lab agent's flow_log_file %q: want flow logs into the file the agent serves", labLogger, p.LabAgent(c).FlowLogFile)
	}
}

// TestPlanDualStack: with Plan.IPv6 set every cell's silk-daemon, agent and
// wrapper config carries ipv6_overlay_network (and loads), except a cell
// marked IPv4Only, whose configs are exactly those of an IPv4-only plan.
func TestPlanDualStack(t *testing.T) {
	v4 := &Plan{Dir: "/lab", Prefix: "10.244.7.", Ports: DefaultPorts(), PollIntervalSeconds: 1}
	dual := *v4
	dual.IPv6 = overlay6.DefaultNetwork
	c := dual.Cell(1)
	if got := dual.SilkDaemon(c).IPv6OverlayNetwork; got != overlay6.DefaultNetwork {
		t.Errorf("silk-daemon ipv6_overlay_network %q", got)
	}
	if got := dual.Agent(c).IPv6OverlayNetwork; got != overlay6.DefaultNetwork {
		t.Errorf("agent ipv6_overlay_network %q", got)
	}
	if got := dual.Wrapper(c).IPv6OverlayNetwork; got != overlay6.DefaultNetwork {
		t.Errorf("wrapper ipv6_overlay_network %q", got)
	}
	wb, _ := json.Marshal(dual.Wrapper(c))
	if w, err := cniwrapper.LoadConfig(wb); err != nil || !w.IPv6().Enabled() {
		t.Errorf("dual-stack wrapper config: %v", err)
	}
	// The IPv6 underlay: the cell's address there is its wrapper's
	// instance_address_ipv6; without one (or on an IPv4-only cell) none.
	if got := dual.Wrapper(c).InstanceAddressIPv6; got != "" {
		t.Errorf("wrapper instance_address_ipv6 %q without an IPv6 underlay", got)
	}
	under6 := dual
	under6.Underlay6 = Underlay6Prefix(under6.Prefix)
	if c6 := under6.Cell(1); under6.Underlay6 != "fd6c:6162:f4:7::" || under6.RootIP6() != "fd6c:6162:f4:7::1" || c6.UnderlayIP6 != "fd6c:6162:f4:7::11" || under6.Wrapper(c6).InstanceAddressIPv6 != c6.UnderlayIP6 {
		t.Errorf("IPv6 underlay %q, root %q, cell 1 %q, its wrapper's instance_address_ipv6 %q", under6.Underlay6, under6.RootIP6(), c6.UnderlayIP6, under6.Wrapper(c6).InstanceAddressIPv6)
	}
	if v4.RootIP6() != "" || v4.Cell(1).UnderlayIP6 != "" {
		t.Errorf("an IPv4-only plan has an IPv6 underlay: %q %q", v4.RootIP6(), v4.Cell(1).UnderlayIP6)
	}
	old6 := under6.Cell(2)
	old6.IPv4Only = true
	if got := under6.Wrapper(old6).InstanceAddressIPv6; got != "" {
		t.Errorf("IPv4-only cell's wrapper instance_address_ipv6 %q", got)
	}
	old := dual.Cell(2)
	old.IPv4Only = true
	for name, pair := range map[string][2]any{
		"silk-daemon": {dual.SilkDaemon(old), v4.SilkDaemon(v4.Cell(2))},
		"agent":       {dual.Agent(old), v4.Agent(v4.Cell(2))},
		"wrapper":     {dual.Wrapper(old), v4.Wrapper(v4.Cell(2))},
	} {
		a, _ := json.Marshal(pair[0])
		b, _ := json.Marshal(pair[1])
		if string(a) != string(b) {
			t.Errorf("%s of an IPv4-only cell in a dual-stack plan:\n%s\nwant the IPv4-only plan's\n%s", name, a, b)
		}
	}
}
