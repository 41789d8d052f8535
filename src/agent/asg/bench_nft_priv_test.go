package asg

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/policy"
	"github.com/netman-release/netman/src/testsupport/benchlat"
	"github.com/netman-release/netman/src/testsupport/nfttest"
)

// mixedGroup is a security group of n rules that stay n set elements
// (no two merge): tcp to single addresses, each its own port, and udp to
// address ranges with gaps between them; variant changes the last rule's
// port.
func mixedGroup(guid string, n, variant int, spaces []string) policy.SecurityGroup {
	var b strings.Builder
	b.WriteString("[")
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		a, c := i/250, i%250
		if i%2 == 0 {
			port := 1024 + i
			if i == n-1 || i == n-2 {
				port = 40000 + variant
			}
			fmt.Fprintf(&b, `{"protocol":"tcp","destination":"10.%d.%d.10","ports":"%d"}`, a, c, port)
		} else {
			fmt.Fprintf(&b, `{"protocol":"udp","destination":"172.%d.%d.1-172.%d.%d.50","ports":"53"}`, 16+a, c, 16+a, c)
		}
	}
	b.WriteString("]")
	return policy.SecurityGroup{GUID: guid, Rules: b.String(), RunningSpaceGUIDs: spaces}
}

// BenchmarkNFTSync250x1000 measures the agent's asg sync in nftables mode
// on a cell of 250 containers set up as cni-wrapper-plugin does, all in
// one space whose security group has 1,000 rules (about 1,000 set
// elements per container, 250,000 in the table):
//
//   - container-added: the force-asgs-for-container call of a CNI ADD,
//     SyncContainers of one new container (its chains and sets), the
//     wrapper's chains written first and everything removed untimed after;
//   - rule-changed: a poll after one rule of the group changed
//     (SyncAll: two elements in each container's sets).
//
// Besides wall-time percentiles it reports the CPU time per operation of
// nft processes (child-cpu-ms/op) and of this process (self-cpu-ms/op).
// Run as root:
//
//	go test ./src/agent/asg -run '^$' -bench BenchmarkNFTSync250x1000 -benchtime 20x
func BenchmarkNFTSync250x1000(b *testing.B) {
	ctx := context.Background()
	k, d := nfttest.NewNSKernel(b, "asgb")
	ns := d.NS
	wcfg := &cniwrapper.Config{VTEPName: "silk-vtep", IngressTag: "ffff0000", InstanceAddress: "10.244.0.1",
		NoMasqueradeCIDRRange: "10.255.0.0/16", IPTablesDeniedLogsPerSec: 1, IPTablesAcceptedUDPLogsPerSec: 100}
	wrapperAdd := func(c Container) {
		p, err := cniwrapper.PlanAddNFT(wcfg, cniwrapper.Container{Handle: c.Handle, IP: netip.MustParseAddr(c.IP), Workload: c.Workload, Interfaces: []string{"eth0"}})
		if err != nil {
			b.Fatal(err)
		}
		if err := ns.Do(func() error { return cniwrapper.NFTAdd(ctx, k, p) }); err != nil {
			b.Fatal(err)
		}
	}
	cs := benchContainers(251, func(int) string { return "space" })
	extra := cs[250]
	cs = cs[:250]
	for _, c := range cs {
		wrapperAdd(c)
	}
	source := &fakeSource{groups: []policy.SecurityGroup{mixedGroup("g", 1000, 0, []string{"space"})}}
	s, err := NewNFT(lager.NewLogger("bench"), d, source, Config{}, 100, nil)
	if err != nil {
		b.Fatal(err)
	}
	seed := time.Now()
	if _, err := s.SyncAll(ctx, cs); err != nil {
		b.Fatal(err)
	}
	b.Logf("first sync of 250 containers: %v", time.Since(seed))

	measure := func(b *testing.B, op func(i int), after func(i int)) {
		var lat []time.Duration
		var child, self time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c0, s0 := rusage(syscall.RUSAGE_CHILDREN), rusage(syscall.RUSAGE_SELF)
			start := time.Now()
			op(i)
			lat = append(lat, time.Since(start))
			child += rusage(syscall.RUSAGE_CHILDREN) - c0
			self += rusage(syscall.RUSAGE_SELF) - s0
			if after != nil {
				b.StopTimer()
				after(i)
				b.StartTimer()
			}
		}
		b.StopTimer()
		benchlat.Report(b, "", lat)
		b.ReportMetric(float64(child.Microseconds())/1000/float64(b.N), "child-cpu-ms/op")
		b.ReportMetric(float64(self.Microseconds())/1000/float64(b.N), "self-cpu-ms/op")
	}
	b.Run("container-added", func(b *testing.B) {
		measure(b, func(int) {
			b.StopTimer()
			wrapperAdd(extra)
			b.StartTimer()
			if err := s.SyncContainers(ctx, []Container{extra}); err != nil {
				b.Fatal(err)
			}
		}, func(int) {
			if err := s.CleanupContainer(ctx, extra.Handle); err != nil {
				b.Fatal(err)
			}
			if err := ns.Do(func() error { return cniwrapper.NFTDel(ctx, k, extra.Handle, netip.MustParseAddr(extra.IP)) }); err != nil {
				b.Fatal(err)
			}
		})
	})
	variant := 0
	b.Run("rule-changed", func(b *testing.B) {
		measure(b, func(int) {
			variant++
			source.set(mixedGroup("g", 1000, variant, []string{"space"}))
			if st, err := s.SyncAll(ctx, cs); err != nil || st.Updated != len(cs) {
				b.Fatalf("sync: %+v, %v", st, err)
			}
		}, nil)
	})
}

// rusage is the user and system CPU time of who (RUSAGE_SELF or
// RUSAGE_CHILDREN).
func rusage(who int) time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
