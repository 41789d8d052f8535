package cniwrapper

import (
	"context"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"sigs.k8s.io/knftables"

	"github.com/netman-release/netman/src/nft"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// nftAddCases are TestAddGolden's cases.
var nftAddCases = []struct {
	name     string
	workload string
	ifaces   []string
	change   func(*Config)
	netOut   []NetOutRule // non-nil: also render the 405 fallback
}{
	{name: "no-port-mappings"},
	{name: "port-mappings", ifaces: []string{"eth0", "eth1"}, change: func(c *Config) {
		c.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}, {HostPort: 61002, ContainerPort: 2222}, {HostPort: 61003, ContainerPort: 8080}}
	}},
	{name: "netout-rules", netOut: netOutCases},
	{name: "netout-rules-asg-logging", netOut: netOutCases, change: func(c *Config) { c.IPTablesASGLogging = true }},
	{name: "deny-networks-app", workload: "app", netOut: []NetOutRule{}, change: denyNetworks},
	{name: "deny-networks-staging", workload: "staging", netOut: []NetOutRule{}, change: denyNetworks},
	{name: "outbound-conn-limit", netOut: []NetOutRule{}, change: func(c *Config) {
		c.OutConn = OutConn{Limit: true, Logging: true, Burst: 999, RatePerSec: 100}
	}},
	{name: "outbound-conn-dry-run", netOut: []NetOutRule{}, change: func(c *Config) {
		c.OutConn = OutConn{DryRun: true, Burst: 1000, RatePerSec: 100}
	}},
	{name: "c2c-logging", change: func(c *Config) { c.IPTablesC2CLogging = true; c.IPTablesDeniedLogsPerSec = 5 }},
	{name: "dns-and-host-services", change: func(c *Config) {
		c.DNSServers = []string{"169.254.0.2", "8.8.8.8", "169.254.0.3"}
		c.HostTCPServices = []string{"169.254.0.2:8080", "10.0.16.5:9000"}
		c.HostUDPServices = []string{"169.254.0.2:8125"}
	}},
	{name: "no-masquerade-range-empty", change: func(c *Config) { c.NoMasqueradeCIDRRange = "" }},
}

const nftHandle = "bfce786c-ab07-40ad-79f9-8f21-c0ffee"

func TestAddNFTGolden(t *testing.T) {
	ip := netip.MustParseAddr("10.255.17.5")
	for _, tc := range nftAddCases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			if tc.change != nil {
				tc.change(cfg)
			}
			ifaces := tc.ifaces
			if ifaces == nil {
				ifaces = []string{"eth0"}
			}
			plan, err := PlanAddNFT(cfg, Container{Handle: nftHandle, IP: ip, Workload: tc.workload, Interfaces: ifaces})
			if err != nil {
				t.Fatal(err)
			}
			f := nft.NewFake()
			if err := NFTAdd(t.Context(), f, plan); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("# ADD, one nft transaction: the skeleton, the container's chains\n")
			b.WriteString(plan.Objects.String())
			b.WriteString("# and its entries in the skeleton's dispatch maps\n")
			b.WriteString(plan.Dispatch.String())
			if tc.netOut != nil {
				rs, warnings := plan.NetOut(tc.netOut)
				if err := NFTSetNetOut(t.Context(), f, rs); err != nil {
					t.Fatal(err)
				}
				b.WriteString("# policy agent answered 405: garden netOutRules, one nft transaction\n")
				b.WriteString(rs.String())
				for _, w := range warnings {
					b.WriteString("# warning: " + w + "\n")
				}
			}
			golden.Check(t, filepath.Join("testdata", "nft-add-"+tc.name+".golden"), []byte(b.String()))
		})
	}
}

func TestPlanAddNFTRejectsWhatPlanAddRejects(t *testing.T) {
	ip := netip.MustParseAddr("10.255.17.5")
	cfg := baseConfig(t)
	cfg.IngressTag = "zz"
	if _, err := PlanAddNFT(cfg, Container{Handle: "h", IP: ip}); err == nil || err.Error() != `invalid ingress tag "zz": must be up to 8 hex digits` {
		t.Errorf("got %v", err)
	}
	if _, err := PlanAddNFT(baseConfig(t), Container{Handle: "h x", IP: ip}); err == nil || !strings.HasPrefix(err.Error(), "invalid Container ID") {
		t.Errorf("handle with a space: got %v", err)
	}
}

// TestDelNFT installs two containers (with port mappings and garden rules)
// and the agent's asg chain of one, deletes that one, and checks that
// exactly its objects went: the table equals the one holding the other
// container alone, plus the asg objects the agent cleans up itself. DEL
// works the same when the IP is unknown, and a second DEL changes nothing.
func TestDelNFT(t *testing.T) {
	ctx := context.Background()
	cfg := baseConfig(t)
	cfg.IPTablesASGLogging = true
	cfg.OutConn = OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}
	cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}}
	install := func(f *nft.Fake, handle, ip string, port int) {
		cfg.RuntimeConfig.PortMappings[0].HostPort = port
		plan, err := PlanAddNFT(cfg, Container{Handle: handle, IP: netip.MustParseAddr(ip), Interfaces: []string{"eth0", "eth1"}})
		if err != nil {
			t.Fatal(err)
		}
		rs, _ := plan.NetOut(netOutCases[:2])
		if err := NFTAdd(ctx, f, plan); err != nil {
			t.Fatal(err)
		}
		if err := NFTSetNetOut(ctx, f, rs); err != nil {
			t.Fatal(err)
		}
	}
	asg := &nft.Ruleset{Chains: []*nft.Chain{{Name: "asg--delete-me", Rules: []string{"accept"}}}}
	want := nft.NewFake()
	install(want, "keep-me", "10.255.17.6", 61001)
	tx := want.NewTransaction()
	nft.Put(tx, asg)
	if err := want.Run(ctx, tx); err != nil {
		t.Fatal(err)
	}

	for _, ip := range []netip.Addr{netip.MustParseAddr("10.255.17.5"), {}} {
		f := nft.NewFake()
		install(f, "keep-me", "10.255.17.6", 61001)
		install(f, "delete-me", "10.255.17.5", 61002)
		tx := f.NewTransaction()
		nft.Put(tx, asg)
		// The agent points the container's netout chain at its asg chain.
		tx.Flush(&knftables.Chain{Name: nft.NetOutChain("delete-me")})
		tx.Add(&knftables.Rule{Chain: nft.NetOutChain("delete-me"), Rule: "jump asg--delete-me"})
		if err := f.Run(ctx, tx); err != nil {
			t.Fatal(err)
		}
		if err := NFTDel(ctx, f, "delete-me", ip); err != nil {
			t.Fatalf("DEL (ip %v): %v", ip, err)
		}
		if ip.IsValid() {
			golden.Check(t, filepath.Join("testdata", "nft-del.golden"), []byte("# DEL, one nft transaction after reading the dispatch maps\n"+f.LastTransaction.String()))
		}
		if diff := cmp.Diff(want.Ruleset().String(), f.Ruleset().String()); diff != "" {
			t.Errorf("after DEL (ip %v) (-want +got):\n%s", ip, diff)
		}
		if err := NFTDel(ctx, f, "delete-me", ip); err != nil {
			t.Errorf("second DEL: %v", err)
		}
		if diff := cmp.Diff(want.Ruleset().String(), f.Ruleset().String()); diff != "" {
			t.Errorf("after a second DEL (-want +got):\n%s", diff)
		}
	}
}
