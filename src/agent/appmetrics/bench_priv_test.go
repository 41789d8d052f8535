package appmetrics

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// benchInstances are n app containers with distinct IPs and handles.
func benchInstances(n int) []Instance {
	out := make([]Instance, n)
	for i := range out {
		out[i] = Instance{
			Handle: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), IP: fmt.Sprintf("10.255.%d.%d", 1+i/250, 2+i%250),
			AppID: fmt.Sprintf("app-%04d", i/2), SpaceID: "space-1", OrgID: "org-1", Index: fmt.Sprint(i % 2),
		}
	}
	return out
}

// BenchmarkScrape is one /metrics scrape of the app series (the kernel
// read and the text) with 250 containers counted, in a namespace holding
// only the counting rules, on each backend.
func BenchmarkScrape(b *testing.B) {
	netnstest.RequireRoot(b)
	ctx := context.Background()
	want := benchInstances(250)
	planes := map[string]func(b *testing.B) DataPlane{
		"nftables": func(*testing.B) DataPlane { return &NFT{} },
	}
	for _, fl := range []iptables.Flavor{iptables.FlavorNFT, iptables.FlavorLegacy} {
		planes["iptables-"+string(fl)] = func(b *testing.B) DataPlane {
			netnstest.RequireIPTables(b, fl)
			return IPTables{Driver: iptables.New(iptables.Config{Flavor: fl, LockFile: filepath.Join(b.TempDir(), "iptables.lock")})}
		}
	}
	for _, name := range []string{"nftables", "iptables-nft", "iptables-legacy"} {
		b.Run(name+"/250", func(b *testing.B) {
			dp := planes[name](b)
			ns := netnstest.New(b, "ambench")
			col := NewCollector(dp, 0)
			if err := ns.Do(func() error { return col.Sync(ctx, want) }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			err := ns.Do(func() error {
				for i := 0; i < b.N; i++ {
					if err := col.WritePrometheus(ctx, io.Discard); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}
