package main_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// BenchmarkBinaryAddDel is BenchmarkAddDel in src/silk/cni measured the
// way a runtime sees it: fork/exec of the built binary per command (Go
// start-up, stdin/stdout, skel) on a cell already running `existing`
// containers. The child is started from a thread inside the host
// namespace, so it inherits that namespace without `ip netns exec`.
func BenchmarkBinaryAddDel(b *testing.B) {
	netnstest.RequireRoot(b)
	for _, existing := range []int{0, 250} {
		b.Run(fmt.Sprintf("existing=%d", existing), func(b *testing.B) {
			host, port, _ := hostWithDaemon(b, "10.255.16.0/23")
			dir := b.TempDir()
			bin := filepath.Join(pluginDir(b), "silk-cni")
			conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"silk","type":"silk-cni","daemonPort":%d,"dataDir":%q,"datastore":%q,"mtu":0}`,
				port, filepath.Join(dir, "host-local"), filepath.Join(dir, "silk", "store.json"))
			run := func(command, id string, ctr *netnstest.NS) time.Duration {
				cmd := exec.Command(bin)
				cmd.Env = append(os.Environ(), "CNI_COMMAND="+command, "CNI_CONTAINERID="+id,
					"CNI_NETNS="+ctr.Path, "CNI_IFNAME=eth0", "CNI_PATH="+filepath.Dir(bin))
				cmd.Stdin = strings.NewReader(conf)
				var out bytes.Buffer
				cmd.Stdout = &out
				var elapsed time.Duration
				err := host.Do(func() error {
					start := time.Now()
					err := cmd.Run()
					elapsed = time.Since(start)
					return err
				})
				if err != nil {
					b.Fatalf("%s %s: %v: %s", command, id, err, out.String())
				}
				return elapsed
			}
			for i := range existing {
				run("ADD", fmt.Sprintf("existing-%d", i), netnstest.New(b, "e"))
			}
			probe := netnstest.New(b, "p")
			adds := make([]time.Duration, 0, b.N)
			dels := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				id := fmt.Sprintf("probe-%d", i)
				adds = append(adds, run("ADD", id, probe))
				dels = append(dels, run("DEL", id, probe))
			}
			b.StopTimer()
			report(b, "add", adds)
			report(b, "del", dels)
		})
	}
}

func report(b *testing.B, name string, d []time.Duration) {
	slices.Sort(d)
	at := func(p float64) float64 { return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond) }
	b.ReportMetric(at(0.50), name+"-p50-ms")
	b.ReportMetric(at(0.99), name+"-p99-ms")
}
