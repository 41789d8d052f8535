package cniwrapper

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/netnstest"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// nsTables runs an iptables driver inside a namespace.
type nsTables struct {
	d  *iptables.Driver
	ns *netnstest.NS
}

func (n nsTables) Apply(ctx context.Context, txs ...*iptables.Tx) error {
	return n.ns.Do(func() error { return n.d.Apply(ctx, txs...) })
}
func (n nsTables) UpdateTables(ctx context.Context, tables []string, plan iptables.MultiPlanFunc) (st map[string]*iptables.State, err error) {
	err = n.ns.Do(func() error { st, err = n.d.UpdateTables(ctx, tables, plan); return err })
	return st, err
}

// seqDelegate hands out the address the benchmark sets before each ADD.
type seqDelegate struct{ ip netip.Addr }

func (d *seqDelegate) Add(context.Context, string, []byte) (types.Result, error) {
	return &types100.Result{CNIVersion: "1.0.0", IPs: []*types100.IPConfig{{Address: net.IPNet{IP: d.ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}}}, nil
}
func (d *seqDelegate) Del(context.Context, string, []byte) error { return nil }

// asgRules is a 1,000-rule security group as garden passes it: a mix of
// tcp port ranges, udp ports, icmp and all-protocol rules to addresses,
// ranges and networks across 10.0.0.0/8 and public space.
func asgRules(n int) []NetOutRule {
	var out []NetOutRule
	for i := 0; i < n; i++ {
		a, b := byte(i/250), byte(i%250)
		var r NetOutRule
		switch i % 4 {
		case 0: // tcp to one address, one port
			r = NetOutRule{Protocol: 1, Networks: []IPRange{gardenRange(fmt.Sprintf("10.%d.%d.10", a, b), fmt.Sprintf("10.%d.%d.10", a, b))}, Ports: []PortRange{{Start: uint16(1024 + i), End: uint16(1024 + i)}}}
		case 1: // tcp to a /24, a port range
			r = NetOutRule{Protocol: 1, Networks: []IPRange{gardenRange(fmt.Sprintf("10.%d.%d.0", 100+a, b), fmt.Sprintf("10.%d.%d.255", 100+a, b))}, Ports: []PortRange{{Start: 8000, End: 8100}}}
		case 2: // udp to a range
			r = NetOutRule{Protocol: 2, Networks: []IPRange{gardenRange(fmt.Sprintf("172.%d.%d.1", 16+a, b), fmt.Sprintf("172.%d.%d.50", 16+a, b))}, Ports: []PortRange{{Start: 53, End: 53}}}
		case 3: // all protocols to one public address
			r = NetOutRule{Protocol: 0, Networks: []IPRange{gardenRange(fmt.Sprintf("52.%d.%d.7", a, b), fmt.Sprintf("52.%d.%d.7", a, b))}}
		}
		out = append(out, r)
	}
	return out
}

// asgRulesDual is asgRules(n) on a dual-stack cell: every other rule's
// destinations are IPv6 (the same shapes under 2001:db8::/32 and
// fd00::/8), so half the group lands in each family's rules.
func asgRulesDual(n int) []NetOutRule {
	out := asgRules(n)
	for i := range out {
		if i%2 == 1 {
			continue
		}
		a, b := i/250, i%250
		lo, hi := fmt.Sprintf("2001:db8:%x:%x::10", a, b), fmt.Sprintf("2001:db8:%x:%x::10", a, b)
		if i%4 == 2 {
			lo, hi = fmt.Sprintf("fd00:%x:%x::1", a, b), fmt.Sprintf("fd00:%x:%x::50", a, b)
		}
		out[i].Networks = []IPRange{gardenRange(lo, hi)}
	}
	return out
}

// BenchmarkPluginAdd measures CNI ADD through the plugin (metadata store,
// both force calls to a local fake agent, the rules; silk-cni stood in
// for) on a cell already holding 250 containers, every one of them with
// the same 1,000-rule security group as garden netOut rules (the agent
// answers 405, so the wrapper writes them), and the new container getting
// it too. Each ADD is followed by an untimed DEL, so the cell stays at
// 250. The -dual variants run the same on a dual-stack cell, half the
// group's destinations IPv6. Run as root:
//
//	go test ./src/cniwrapper -run '^$' -bench BenchmarkPluginAdd -benchtime 200x
func BenchmarkPluginAdd(b *testing.B) {
	netnstest.RequireRoot(b)
	const existing, asgSize = 250, 1000
	asg := asgRules(asgSize)
	backends := []string{"nftables", "nftables-dual"}
	for _, fl := range netnstest.IPTablesFlavors(b) {
		backends = append(backends, "iptables-"+string(fl), "iptables-"+string(fl)+"-dual")
	}
	for _, backend := range backends {
		b.Run(fmt.Sprintf("%s/existing=%d/asg=%d", backend, existing, asgSize), func(b *testing.B) {
			ns := netnstest.New(b, "bp")
			agent := newFakeAgent(b)
			agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
			agent.status["/force-orphaned-asgs-cleanup"] = http.StatusMethodNotAllowed
			dir := b.TempDir()
			cfg := benchConfig(b)
			cfg.Datastore = dir + "/store.json"
			cfg.IPTablesLockFile = dir + "/iptables.lock"
			cfg.UnderlayIPs = []string{"10.0.16.5"}
			cfg.PolicyAgentForcePollAddress = agent.addr()
			cfg.Delegate = map[string]any{"type": "silk-cni"}
			cfg.RuntimeConfig.NetOutRules = asg
			cfg.Metadata = map[string]any{"container_workload": "app"}
			deleg := &seqDelegate{}
			p := &Plugin{
				Delegate:   deleg,
				Store:      func(cfg *Config) Store { return metadata.New(cfg.Datastore) },
				HTTP:       http.DefaultClient,
				Interfaces: func([]string) ([]string, error) { return []string{"eth0"}, nil },
				Stderr:     &discard{},
			}
			// -dual: a dual-stack cell (ipv6_overlay_network), half the
			// group's destinations IPv6.
			dual := strings.HasSuffix(backend, "-dual")
			if dual {
				cfg.IPv6OverlayNetwork = "fd73:696c:6b::/96"
				cfg.InstanceAddressIPv6 = "2001:db8:16::5"
				cfg.RuntimeConfig.NetOutRules = asgRulesDual(asgSize)
			}
			if strings.HasPrefix(backend, "nftables") {
				cfg.EnforcementBackend = BackendNFTables
				var k *nft.Kernel
				if err := ns.Do(func() (err error) { k, err = nft.New(); return err }); err != nil {
					b.Fatal(err)
				}
				p.NFT = func(*Config) (nft.Driver, error) { return nfttest.NSDriver{D: k, NS: ns}, nil }
			} else {
				cfg.IPTablesFlavor = strings.TrimSuffix(backend[len("iptables-"):], "-dual")
				fl, _ := iptables.ParseFlavor(cfg.IPTablesFlavor)
				t := nsTables{d: iptables.New(iptables.Config{Flavor: fl, LockFile: cfg.IPTablesLockFile}), ns: ns}
				t6 := nsTables{d: iptables.New(iptables.Config{Flavor: fl, Family: iptables.IPv6, LockFile: cfg.IPTablesLockFile}), ns: ns}
				p.Tables = func(*Config) Tables { return t }
				p.Tables6 = func(*Config) Tables { return t6 }
			}
			ctx := context.Background()
			// Each container has its own two host ports.
			stdinFor := func(n int) []byte {
				cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 20000 + 2*n, ContainerPort: 8080}, {HostPort: 20001 + 2*n, ContainerPort: 2222}}
				stdin, err := json.Marshal(cfg)
				if err != nil {
					b.Fatal(err)
				}
				return stdin
			}
			add := func(handle string, n int) time.Duration {
				deleg.ip = ipN(n)
				stdin := stdinFor(n)
				start := time.Now()
				if _, err := p.Add(ctx, cniArgs(handle, stdin)); err != nil {
					b.Fatal(err)
				}
				return time.Since(start)
			}
			seedStart := time.Now()
			for i := 0; i < existing; i++ {
				add(fmt.Sprintf("seed-%04d-ab07-40ad-79f9-8f21", i), i)
			}
			seed := time.Since(seedStart)
			var lat []time.Duration
			var child, self time.Duration // CPU of the ADDs: nft/iptables processes, this process
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				handle := fmt.Sprintf("bench-%06d-ab07-40ad-79f9", i)
				c0, s0 := rusage(syscall.RUSAGE_CHILDREN), rusage(syscall.RUSAGE_SELF)
				lat = append(lat, add(handle, existing+1))
				child += rusage(syscall.RUSAGE_CHILDREN) - c0
				self += rusage(syscall.RUSAGE_SELF) - s0
				b.StopTimer()
				if err := p.Del(ctx, cniArgs(handle, stdinFor(existing+1))); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.StopTimer()
			benchlat.Report(b, "", lat)
			b.ReportMetric(float64(child.Microseconds())/1000/float64(b.N), "child-cpu-ms/op")
			b.ReportMetric(float64(self.Microseconds())/1000/float64(b.N), "self-cpu-ms/op")
			b.ReportMetric(seed.Seconds(), "seed-s")
		})
	}
}

func cniArgs(handle string, stdin []byte) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: handle, Netns: "/run/netns/x", IfName: "eth0", StdinData: stdin}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// rusage is the user and system CPU time of who (RUSAGE_SELF: this
// process, every thread; RUSAGE_CHILDREN: its waited-for children).
func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
