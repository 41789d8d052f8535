package cni

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/testsupport/netnstest"

	"github.com/netman-release/netman/src/testsupport/benchlat"
)

// BenchmarkAddDel measures one ADD and one DEL of a container on a cell
// that already runs `existing` containers (a /23 lease, so 250 fit with
// room to spare). The plugin runs in-process, as the binary would after
// start-up: daemon request, host-local reservation, veth, host and
// container setup, store write; logging goes through a real lager sink.
// Per-operation latencies are reported as add-p50-ms, add-p99-ms, ...
func BenchmarkAddDel(b *testing.B) {
	for _, existing := range []int{0, 250} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			c := newCell(b, "10.255.16.0/23")
			logger := lager.NewLogger("cfnetworking")
			logger.RegisterSink(lager.NewPrettySink(io.Discard, lager.INFO))
			c.plugin.Logger = logger.Session("silk-cni")
			for i := range existing {
				c.add(b, netnstest.New(b, "e"), fmt.Sprintf("existing-%d", i))
			}
			probe := netnstest.New(b, "p")
			ctx := context.Background()

			adds := make([]time.Duration, 0, b.N)
			dels := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				args := c.args(probe, fmt.Sprintf("probe-%d", i))
				start := time.Now()
				if _, err := c.plugin.Add(ctx, args); err != nil {
					b.Fatal(err)
				}
				mid := time.Now()
				if err := c.plugin.Del(ctx, args); err != nil {
					b.Fatal(err)
				}
				adds = append(adds, mid.Sub(start))
				dels = append(dels, time.Since(mid))
			}
			b.StopTimer()
			benchlat.Report(b, "add", adds)
			benchlat.Report(b, "del", dels)
		})
	}
}
