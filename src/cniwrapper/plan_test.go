package cniwrapper

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/testsupport/configtest"
	"github.com/netman-release/netman/src/testsupport/golden"
)

// baseConfig is the example conflist's plugin config with the optional
// features off, so each case shows what one feature adds.
func baseConfig(t *testing.T) *Config {
	t.Helper()
	stdin := exampleStdin(t)
	stdin["dns_servers"] = []string{}
	stdin["host_tcp_services"] = []string{}
	stdin["host_udp_services"] = []string{}
	stdin["deny_networks"] = map[string]any{}
	cfg, err := LoadConfig(configtest.JSON(t, stdin))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func u8(v uint8) *uint8 { return &v }

func gardenRange(start, end string) IPRange {
	return IPRange{Start: netip.MustParseAddr(start).AsSlice(), End: netip.MustParseAddr(end).AsSlice()}
}

var netOutCases = []NetOutRule{
	{Protocol: 1, Networks: []IPRange{gardenRange("10.10.0.0", "10.10.255.255")}, Ports: []PortRange{{Start: 80, End: 80}, {Start: 8000, End: 8999}}},
	{Protocol: 2, Networks: []IPRange{gardenRange("8.8.8.8", "8.8.8.8"), gardenRange("8.8.4.4", "8.8.4.4")}, Ports: []PortRange{{Start: 53, End: 53}}, Log: true},
	{Protocol: 3, Networks: []IPRange{gardenRange("10.20.0.1", "10.20.0.9")}, ICMPs: &ICMPControl{Type: 8, Code: u8(0)}},
	{Protocol: 3, Networks: []IPRange{gardenRange("0.0.0.0", "255.255.255.255")}, ICMPs: &ICMPControl{Type: 255, Code: u8(255)}},
	{Protocol: 0, Networks: []IPRange{gardenRange("192.168.1.1", "192.168.1.254")}},
	{Protocol: 1, Networks: []IPRange{gardenRange("10.30.0.1", "10.30.0.1")}},                                               // no ports: skipped with a warning
	{Protocol: 1, Networks: []IPRange{gardenRange("10.10.0.0", "10.10.255.255")}, Ports: []PortRange{{Start: 80, End: 80}}}, // duplicate
}

func TestAddGolden(t *testing.T) {
	const handle = "bfce786c-ab07-40ad-79f9-8f21-c0ffee"
	ip := netip.MustParseAddr("10.255.17.5")
	for _, tc := range []struct {
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
		{name: "outbound-conn-limit-no-logging", netOut: []NetOutRule{}, change: func(c *Config) {
			c.OutConn = OutConn{Limit: true, Burst: 1000, RatePerSec: 100}
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
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			if tc.change != nil {
				tc.change(cfg)
			}
			ifaces := tc.ifaces
			if ifaces == nil {
				ifaces = []string{"eth0"}
			}
			plan, err := PlanAdd(cfg, Container{Handle: handle, IP: ip, Workload: tc.workload, Interfaces: ifaces})
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("# ADD: one iptables-restore --noflush payload\n")
			b.WriteString(iptables.Render(plan.Filter, plan.NAT, plan.Mangle))
			txs := []*iptables.Tx{plan.Filter, plan.NAT, plan.Mangle}
			if tc.netOut != nil {
				var warnings []string
				tx := plan.NetOut(tc.netOut, func(s string) { warnings = append(warnings, s) })
				b.WriteString("# policy agent answered 405: garden netOutRules\n")
				b.WriteString(tx.String())
				for _, w := range warnings {
					b.WriteString("# warning: " + w + "\n")
				}
				txs = append(txs, tx)
			}
			// Apply to the in-memory tables to show the resulting chains.
			tables := iptablestest.New()
			for _, tx := range txs {
				if err := tables.Apply(t.Context(), tx); err != nil {
					t.Fatal(err)
				}
			}
			b.WriteString("# resulting tables\n")
			for _, table := range []string{iptables.Filter, iptables.NAT, iptables.Mangle} {
				b.WriteString(tables.Dump(table))
			}
			golden.Check(t, filepath.Join("testdata", "add-"+tc.name+".golden"), []byte(b.String()))
		})
	}
}

func denyNetworks(c *Config) {
	c.DenyNetworks = DenyNetworks{
		Always:  []string{"169.254.169.254/32", "10.0.0.1/8"},
		Running: []string{"172.16.0.0/12"},
		Staging: []string{"192.168.0.0/16"},
	}
}

func TestPlanAddRejectsBadInput(t *testing.T) {
	ip := netip.MustParseAddr("10.255.17.5")
	for _, tc := range []struct {
		change func(*Config, *Container)
		want   string
	}{
		{func(_ *Config, c *Container) { c.Handle = "" }, "invalid Container ID"},
		{func(_ *Config, c *Container) { c.IP = netip.MustParseAddr("fd00::1") }, "container IP fd00::1 is not IPv4"},
		{func(c *Config, _ *Container) { c.DNSServers = []string{"8.8.8.8", "dns.example"} }, `invalid DNS server "dns.example", must be valid IP address`},
		{func(c *Config, _ *Container) { c.HostTCPServices = []string{"10.0.0.1"} }, "initialize net out: input rules: host tcp services: address 10.0.0.1: missing port in address"},
		{func(c *Config, _ *Container) { c.HostUDPServices = []string{"10.0.0.1:x"} }, `initialize net out: input rules: host udp services: invalid port in "10.0.0.1:x"`},
		{func(c *Config, _ *Container) { c.HostTCPServices = []string{"host:80"} }, `initialize net out: input rules: host tcp services: invalid IPv4 address in "host:80"`},
		{func(c *Config, _ *Container) { c.DenyNetworks.Running = []string{"10.0.0.0/33"} }, "initialize net out: deny networks: invalid CIDR address: 10.0.0.0/33"},
		{func(c *Config, _ *Container) { c.IngressTag = "zz" }, `invalid ingress tag "zz": must be up to 8 hex digits`},
		{func(c *Config, _ *Container) { c.NoMasqueradeCIDRRange = "10.255.0.0/99" }, `invalid no_masquerade_cidr_range "10.255.0.0/99"`},
		{func(c *Config, _ *Container) {
			c.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 0, ContainerPort: 8080}}
		}, "cannot allocate port 0"},
		{func(c *Config, _ *Container) {
			c.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61000, ContainerPort: 0}}
		}, "adding netin rule: invalid container port 0"},
		{func(c *Config, _ *Container) {
			c.InstanceAddress = "10.0.16"
			c.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61000, ContainerPort: 8080}}
		}, "adding netin rule: invalid ip: 10.0.16"},
	} {
		cfg := baseConfig(t)
		c := Container{Handle: "h", IP: ip, Interfaces: []string{"eth0"}}
		tc.change(cfg, &c)
		if _, err := PlanAdd(cfg, c); err == nil || err.Error() != tc.want {
			t.Errorf("got %v, want %q", err, tc.want)
		}
	}
	// A bad instance address only matters when something is mapped.
	cfg := baseConfig(t)
	cfg.InstanceAddress = "nonsense"
	if _, err := PlanAdd(cfg, Container{Handle: "h", IP: ip}); err != nil {
		t.Errorf("instance address checked without port mappings: %v", err)
	}
}

// TestDelGolden sets up two containers next to rules netman does not own,
// then deletes one: exactly its chains and rules go, whatever else is there.
func TestDelGolden(t *testing.T) {
	ctx := t.Context()
	tables := iptablestest.New()
	foreign := []*iptables.Tx{
		iptables.NewTx(iptables.Filter).DeclareChain("vpa--1700000000000000").DeclareChain("other").
			Append("INPUT", "-i lo -j ACCEPT").
			Append("FORWARD", "-j vpa--1700000000000000", "-s 10.255.17.5/32 -j other").
			Append("other", "-j ACCEPT"),
		iptables.NewTx(iptables.NAT).Append("POSTROUTING", "-s 10.255.17.5/32 -o eth9 -j MASQUERADE", "-o eth0 -j MASQUERADE"),
		iptables.NewTx(iptables.Mangle).Append("PREROUTING", "-i eth0 -j ACCEPT"),
	}
	if err := tables.Apply(ctx, foreign...); err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig(t)
	cfg.IPTablesASGLogging = true
	cfg.OutConn = OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}
	cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}}
	install := func(handle, ip string) {
		plan, err := PlanAdd(cfg, Container{Handle: handle, IP: netip.MustParseAddr(ip), Interfaces: []string{"eth0", "eth1"}})
		if err != nil {
			t.Fatal(err)
		}
		if err := tables.Apply(ctx, plan.Filter, plan.NAT, plan.Mangle, plan.NetOut(netOutCases[:2], nil)); err != nil {
			t.Fatal(err)
		}
	}
	install("keep-me", "10.255.17.6")
	before := dumpAll(tables)
	install("delete-me", "10.255.17.5")
	// The policy agent's ASG chain for delete-me, using its log chain.
	ch := ChainsFor("delete-me")
	asg := iptables.NewTx(iptables.Filter).DeclareChain("asg-deleteme").
		Append("asg-deleteme", iptables.Rule("-m iprange --dst-range 1.1.1.1-1.1.1.1 -g "+ch.Log)).
		Insert(ch.NetOut, 1, "-j asg-deleteme")
	if err := tables.Apply(ctx, asg); err != nil {
		t.Fatal(err)
	}

	var b strings.Builder
	for _, ipKnown := range []bool{true, false} {
		d := &DelPlanner{Handle: "delete-me", NoMasquerade: netip.MustParsePrefix("10.255.0.0/16"), VTEPName: "silk-vtep"}
		if ipKnown {
			d.IP = netip.MustParseAddr("10.255.17.5")
		}
		fmt.Fprintf(&b, "# DEL delete-me (ip known from the store: %v)\n", ipKnown)
		for _, step := range []struct {
			table string
			plan  iptables.PlanFunc
		}{{iptables.Filter, d.Filter}, {iptables.NAT, d.NAT}, {iptables.Mangle, d.Mangle}} {
			if _, err := tables.Update(ctx, step.table, func(cur *iptables.State) (*iptables.Tx, error) {
				tx, err := step.plan(cur)
				if err == nil {
					b.WriteString(tx.String())
				}
				return tx, err
			}); err != nil {
				t.Fatalf("%s: %v", step.table, err)
			}
		}
		fmt.Fprintf(&b, "# kept: %q\n", d.Kept)
		if ipKnown {
			if !cmp.Equal(d.Kept, []string{ch.Log}) {
				t.Errorf("kept %q, want the log chain the asg chain still uses", d.Kept)
			}
			// What the policy agent's orphan cleanup does next.
			cleanup := iptables.NewTx(iptables.Filter).Flush("asg-deleteme").DeleteChain("asg-deleteme").DeleteChain(ch.Log)
			if err := tables.Apply(ctx, cleanup); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, dumpAll(tables)); diff != "" {
				t.Errorf("DEL did not restore the tables (-before +after):\n%s", diff)
			}
			// Reinstall without the store knowing the IP for round two.
			install("delete-me", "10.255.17.5")
		} else if diff := cmp.Diff(before, dumpAll(tables)); diff != "" {
			t.Errorf("DEL without the IP did not restore the tables (-before +after):\n%s", diff)
		}
	}
	// A second DEL finds nothing to do.
	d := &DelPlanner{Handle: "delete-me", VTEPName: "silk-vtep"}
	for table, plan := range map[string]iptables.PlanFunc{iptables.Filter: d.Filter, iptables.NAT: d.NAT, iptables.Mangle: d.Mangle} {
		st, _ := tables.Save(ctx, table)
		if tx, err := plan(st); err != nil || !tx.Empty() {
			t.Errorf("repeat DEL of %s not empty: %v %v", table, tx, err)
		}
	}
	b.WriteString("# resulting tables\n" + dumpAll(tables))
	golden.Check(t, filepath.Join("testdata", "del.golden"), []byte(b.String()))
}

func dumpAll(t *iptablestest.Tables) string {
	return t.Dump(iptables.Filter) + t.Dump(iptables.NAT) + t.Dump(iptables.Mangle)
}

// BenchmarkDelPlan is DEL's in-process work on a cell with 250 containers
// (35 rules each): parsing one iptables-save of every table and planning.
func BenchmarkDelPlan(b *testing.B) {
	cfg := benchConfig(b)
	tables := iptablestest.New()
	for i := 0; i < 250; i++ {
		p, err := PlanAdd(cfg, Container{Handle: fmt.Sprintf("seed-%04d", i), IP: ipN(i), Interfaces: []string{"eth0"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := tables.Apply(b.Context(), p.Filter, p.NAT, p.Mangle, p.NetOut(benchNetOut, nil)); err != nil {
			b.Fatal(err)
		}
	}
	text := dumpAll(tables)
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cur, err := iptables.ParseSaveTables(text, DelTables...)
		if err != nil {
			b.Fatal(err)
		}
		d := &DelPlanner{Handle: "seed-0100", VTEPName: "silk-vtep"}
		txs, _ := d.Plan(cur)
		if len(txs[0].Lines()) == 0 {
			b.Fatal("nothing planned")
		}
	}
}
