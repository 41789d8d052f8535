package discovery_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/netman-release/netman/src/discovery/discoverytest"
	"github.com/netman-release/netman/src/mtls/mtlstest"
	"github.com/netman-release/netman/src/testsupport/benchlat"
)

const benchRoutes = 10000

// BenchmarkAdapterLookup measures what an app's DNS query costs beyond
// bosh-dns: an HTTP query to the adapter, which asks the controller over
// mutual TLS (kept-alive connections, as in production) and shuffles the
// answer. The controller holds 10,000 internal routes of two instances each
// (40,000 names with instance names). Reports p50/p99/p99.9 per query.
func BenchmarkAdapterLookup(b *testing.B) {
	files := mtlstest.NewTestFiles(b)
	n := discoverytest.StartNATS(b, discoverytest.NATSConfig{})
	sdc := discoverytest.StartController(b, discoverytest.ControllerConfig(b, files, n))
	a := discoverytest.StartAdapter(b, discoverytest.AdapterConfig(b, files, sdc.Config.Port))
	e, err := discoverytest.NewEmitter(n.URL(), true)
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	for r := range benchRoutes {
		host := fmt.Sprintf("app-%d.apps.internal", r)
		if err := e.Register(
			discoverytest.Instance{Hostname: host, Index: 0, IP: fmt.Sprintf("10.%d.%d.2", 100+r/256, r%256)},
			discoverytest.Instance{Hostname: host, Index: 1, IP: fmt.Sprintf("10.%d.%d.3", 100+r/256, r%256)},
		); err != nil {
			b.Fatal(err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); sdc.Table.Len() < 4*benchRoutes; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("only %d of %d registrations arrived", sdc.Table.Len(), 4*benchRoutes)
		}
	}
	names := func(i int) string {
		r := (i * 7919) % benchRoutes
		if i%2 == 0 {
			return fmt.Sprintf("app-%d.apps.internal.", r)
		}
		return fmt.Sprintf("%d.app-%d.apps.internal.", i%2, r)
	}
	// Warm the connection pools.
	for i := range 100 {
		if _, err := a.IPs(names(i)); err != nil {
			b.Fatal(err)
		}
	}

	b.Run("serial", func(b *testing.B) {
		var lat benchlat.Latencies
		b.ResetTimer()
		for i := range b.N {
			start := time.Now()
			ips, err := a.IPs(names(i))
			lat.Add(time.Since(start))
			if err != nil || len(ips) == 0 {
				b.Fatalf("%s: %v %v", names(i), ips, err)
			}
		}
		b.StopTimer()
		lat.Report(b)
	})
	b.Run("parallel", func(b *testing.B) {
		var lat benchlat.Latencies
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				i++
				start := time.Now()
				ips, err := a.IPs(names(i))
				lat.Add(time.Since(start))
				if err != nil || len(ips) == 0 {
					b.Errorf("%s: %v %v", names(i), ips, err)
					return
				}
			}
		})
		b.StopTimer()
		lat.Report(b)
	})
}
