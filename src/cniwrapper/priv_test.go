package cniwrapper

import (
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// chainsOf maps chain → rules, ignoring chain declaration order (which
// differs between backends).
func chainsOf(st *iptables.State) map[string][]iptables.Rule {
	m := map[string][]iptables.Rule{}
	for _, c := range st.Chains() {
		m[c.Name] = append([]iptables.Rule{}, c.Rules...)
	}
	return m
}

var allTables = []string{iptables.Filter, iptables.NAT, iptables.Mangle}

func saveAll(t *testing.T, ns *netnstest.NS, d *iptables.Driver) map[string]map[string][]iptables.Rule {
	t.Helper()
	out := map[string]map[string][]iptables.Rule{}
	if err := ns.Do(func() error {
		for _, table := range allTables {
			st, err := d.Save(t.Context(), table)
			if err != nil {
				return err
			}
			out[table] = chainsOf(st)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAddAndDelInKernel applies ADD's rules with the real iptables inside a
// namespace, checks iptables-save shows exactly what the in-memory model
// predicts (so the golden files describe the kernel), then DEL leaves the
// tables as they were, foreign rules included.
func TestAddAndDelInKernel(t *testing.T) {
	netnstest.RequireRoot(t)
	foreign := []*iptables.Tx{
		iptables.NewTx(iptables.Filter).DeclareChain("other").
			Append("INPUT", "-i lo -j ACCEPT").
			Append("FORWARD", "-s 10.255.17.5/32 -j other").
			Append("other", "-j ACCEPT"),
		iptables.NewTx(iptables.NAT).Append("POSTROUTING", "-s 10.255.17.5/32 -o eth9 -j MASQUERADE"),
		iptables.NewTx(iptables.Mangle).Append("PREROUTING", "-i eth0 -j ACCEPT"),
	}
	cfg := baseConfig(t)
	cfg.IPTablesASGLogging, cfg.IPTablesC2CLogging = true, true
	cfg.DNSServers = []string{"169.254.0.2", "8.8.8.8"}
	cfg.HostTCPServices = []string{"169.254.0.2:8080"}
	cfg.HostUDPServices = []string{"169.254.0.2:8125"}
	denyNetworks(cfg)
	cfg.OutConn = OutConn{Limit: true, Logging: true, Burst: 1000, RatePerSec: 100}
	cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}, {HostPort: 61002, ContainerPort: 2222}}
	const handle = "bfce786c-ab07-40ad-79f9-8f21-c0ffee"
	plan, err := PlanAdd(cfg, Container{Handle: handle, IP: netip.MustParseAddr("10.255.17.5"), Workload: "app", Interfaces: []string{"eth0", "eth1"}})
	if err != nil {
		t.Fatal(err)
	}
	netOut := plan.NetOut(netOutCases, nil)

	model := iptablestest.New()
	if err := model.Apply(t.Context(), append(append([]*iptables.Tx{}, foreign...), plan.Filter, plan.NAT, plan.Mangle, netOut)...); err != nil {
		t.Fatal(err)
	}

	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) {
			ns := netnstest.New(t, "cw")
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: t.TempDir() + "/iptables.lock"})
			if err := ns.Do(func() error { return d.Apply(t.Context(), foreign...) }); err != nil {
				t.Fatal(err)
			}
			before := saveAll(t, ns, d)
			if err := ns.Do(func() error {
				if err := d.Apply(t.Context(), plan.Filter, plan.NAT, plan.Mangle); err != nil {
					return err
				}
				return d.Apply(t.Context(), netOut)
			}); err != nil {
				t.Fatal(err)
			}
			after := saveAll(t, ns, d)
			for _, table := range allTables {
				st, _ := model.Save(t.Context(), table)
				if diff := cmp.Diff(chainsOf(st), after[table]); diff != "" {
					t.Errorf("%s: kernel differs from the model (-model +kernel):\n%s", table, diff)
				}
			}

			del := &DelPlanner{Handle: handle, NoMasquerade: netip.MustParsePrefix(cfg.NoMasqueradeCIDRRange), VTEPName: "silk-vtep"}
			if err := ns.Do(func() error {
				_, err := d.UpdateTables(t.Context(), DelTables, del.Plan)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(before, saveAll(t, ns, d)); diff != "" {
				t.Errorf("DEL did not restore the tables (-before +after):\n%s", diff)
			}
			if len(del.Kept) != 0 {
				t.Errorf("kept %q", del.Kept)
			}
		})
	}
}

// BenchmarkAddTransaction measures ADD's iptables work on a cell already
// holding 0 or 250 containers' chains: "add" is the one restore ADD always
// runs; "add+netout" adds the second restore of the 405 (static ASG) path;
// "upstream-style-add+netout" makes the same changes with upstream's
// sequence of separate iptables and iptables-restore calls;
// "del" is DEL's read-plan-write (one iptables-save, one iptables-restore).
func BenchmarkAddTransaction(b *testing.B) {
	netnstest.RequireRoot(b)
	cfg := benchConfig(b)
	for _, fl := range netnstest.IPTablesFlavors(b) {
		for _, existing := range []int{0, 250} {
			ns := netnstest.New(b, "bn")
			d := iptables.New(iptables.Config{Flavor: fl, LockFile: b.TempDir() + "/iptables.lock"})
			var seed []*iptables.Tx
			for i := 0; i < existing; i++ {
				p := benchPlan(b, cfg, fmt.Sprintf("seed-%04d-ab07-40ad-79f9-8f21", i), i)
				seed = append(seed, p.Filter, p.NAT, p.Mangle, p.NetOut(benchNetOut, nil))
			}
			if err := ns.Do(func() error { return d.Apply(b.Context(), seed...) }); err != nil {
				b.Fatal(err)
			}
			rules := 0
			_ = ns.Do(func() error {
				for _, table := range allTables {
					st, err := d.Save(b.Context(), table)
					if err != nil {
						return err
					}
					rules += st.RuleCount()
				}
				return nil
			})
			for _, mode := range []string{"add", "add+netout", "upstream-style-add+netout", "del"} {
				b.Run(fmt.Sprintf("%s/%s/existing=%d", mode, fl, existing), func(b *testing.B) {
					b.ReportMetric(float64(rules), "rules-on-cell")
					for i := 0; i < b.N; i++ {
						p := benchPlan(b, cfg, fmt.Sprintf("bench-%06d-ab07-40ad-79f9", i), 300)
						netOut := p.NetOut(benchNetOut, nil)
						del := &DelPlanner{Handle: fmt.Sprintf("bench-%06d-ab07-40ad-79f9", i), VTEPName: "silk-vtep"}
						err := ns.Do(func() error {
							if mode == "del" {
								b.StopTimer()
							}
							if mode == "upstream-style-add+netout" {
								if err := upstreamStyle(b, d, p.Filter, p.NAT, p.Mangle, netOut); err != nil {
									return err
								}
							} else if err := d.Apply(b.Context(), p.Filter, p.NAT, p.Mangle); err != nil {
								return err
							}
							if mode == "add+netout" {
								if err := d.Apply(b.Context(), netOut); err != nil {
									return err
								}
							}
							if mode == "del" {
								b.StartTimer()
							} else {
								b.StopTimer()
							}
							if _, err := d.UpdateTables(b.Context(), DelTables, del.Plan); err != nil {
								return err
							}
							if mode == "del" {
								b.StopTimer()
							}
							b.StartTimer()
							return nil
						})
						if err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// upstreamStyle applies the same changes the way upstream's wrapper does:
// one `iptables -N` per chain and one iptables-restore per (table, chain)
// batch of rules, each its own exec and kernel write (18 for a
// container with two port mappings).
func upstreamStyle(b *testing.B, d *iptables.Driver, txs ...*iptables.Tx) error {
	ipt, _, _ := d.Binaries()
	for _, tx := range txs {
		var batch *iptables.Tx
		key := ""
		flush := func() error {
			if batch != nil && !batch.Empty() {
				if err := d.Apply(b.Context(), batch); err != nil {
					return err
				}
			}
			batch, key = nil, ""
			return nil
		}
		for _, l := range tx.Lines() {
			if l[0] == ':' {
				if err := flush(); err != nil {
					return err
				}
				name := l[1:strings.IndexByte(l, ' ')]
				if out, err := exec.Command(ipt, "-w", "-t", tx.Table(), "-N", name).CombinedOutput(); err != nil {
					return fmt.Errorf("%s -N %s: %v: %s", ipt, name, err, out)
				}
				continue
			}
			f := strings.SplitN(l, " ", 3)
			if k := f[0] + " " + f[1]; k != key {
				if err := flush(); err != nil {
					return err
				}
				batch, key = iptables.NewTx(tx.Table()), k
			}
			switch f[0] {
			case "-A":
				batch.Append(f[1], iptables.Rule(f[2]))
			case "-I":
				n := strings.SplitN(f[2], " ", 2)
				batch.Insert(f[1], 1, iptables.Rule(n[1]))
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	return nil
}

var benchNetOut = func() []NetOutRule {
	var out []NetOutRule
	for i := 0; i < 10; i++ {
		out = append(out, NetOutRule{Protocol: 1, Networks: []IPRange{gardenRange(fmt.Sprintf("10.%d.0.0", i), fmt.Sprintf("10.%d.255.255", i))}, Ports: []PortRange{{Start: 443, End: 443}}})
	}
	return out
}()

func benchConfig(testing.TB) *Config {
	cfg := &Config{
		InstanceAddress: "10.0.16.5", NoMasqueradeCIDRRange: "10.255.0.0/16", IngressTag: "ffff0000", VTEPName: "silk-vtep",
		IPTablesDeniedLogsPerSec: 1, IPTablesAcceptedUDPLogsPerSec: 100, DNSServers: []string{"169.254.0.2"},
		DenyNetworks: DenyNetworks{Always: []string{"169.254.169.254/32"}},
		OutConn:      OutConn{Burst: 1000, RatePerSec: 100},
	}
	cfg.RuntimeConfig.PortMappings = []PortMapping{{HostPort: 61001, ContainerPort: 8080}, {HostPort: 61002, ContainerPort: 2222}}
	return cfg
}

func ipN(n int) netip.Addr { return netip.AddrFrom4([4]byte{10, 255, byte(n / 250), byte(n%250 + 2)}) }

func benchPlan(b *testing.B, cfg *Config, handle string, n int) *AddPlan {
	ip := netip.AddrFrom4([4]byte{10, 255, byte(n / 250), byte(n%250 + 2)})
	p, err := PlanAdd(cfg, Container{Handle: handle, IP: ip, Workload: "app", Interfaces: []string{"eth0"}})
	if err != nil {
		b.Fatal(err)
	}
	return p
}
