package datastoresyncer_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"code.cloudfoundry.org/lager/v3"

	"github.com/netman-release/netman/src/gardenclient"
	"github.com/netman-release/netman/src/gardenclient/gardentest"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/silk/datastoresyncer"
)

// BenchmarkSync is one cycle on a full cell (250 containers) against the
// fake Garden on its unix socket: "steady" finds nothing to change (every
// cycle but the rare one after a rename), "all-renamed" rewrites every
// entry (in one store write).
func BenchmarkSync(b *testing.B) {
	const n = 250
	for _, renameAll := range []bool{false, true} {
		name := "steady"
		if renameAll {
			name = "all-renamed"
		}
		b.Run(fmt.Sprintf("%s/%d", name, n), func(b *testing.B) {
			ctx := b.Context()
			g := gardentest.New(b)
			store := metadata.New(filepath.Join(b.TempDir(), "store.json"))
			lc := func(app string) string {
				return `{"guid":"guid","index":0,"source_name":"CELL","tags":{"app_name":"` + app + `"}}`
			}
			for i := 0; i < n; i++ {
				h := fmt.Sprintf("container-%03d", i)
				g.Create(h, map[string]string{"log_config": lc("a")})
				if err := store.Add(ctx, h, fmt.Sprintf("10.255.7.%d", i+2), map[string]any{"log_config": lc("a"), "app_id": "guid"}); err != nil {
					b.Fatal(err)
				}
			}
			s := &datastoresyncer.Syncer{Garden: gardenclient.New("unix", g.Socket, 10*time.Second), Store: store, Logger: lager.NewLogger("bench")}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if renameAll {
					b.StopTimer()
					for j := 0; j < n; j++ {
						g.SetProperty(fmt.Sprintf("container-%03d", j), "log_config", lc(fmt.Sprint(i)))
					}
					b.StartTimer()
				}
				st, err := s.Sync(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if want := map[bool]int{false: 0, true: n}[renameAll]; st.Updated != want {
					b.Fatalf("updated %d, want %d", st.Updated, want)
				}
			}
		})
	}
}
