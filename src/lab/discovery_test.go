package lab

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/mtls"
)

// TestAdapterLogHasEachLineOnce runs the real bosh-dns-adapter as the lab
// starts it (CellPlan.AdapterSpec) and makes it fail: its DNS address is
// taken. The adapter logs that error to stdout and again to stderr
// (upstream's two sinks); the cell's bosh-dns-adapter.log must have every
// line once, and the error must still be in bosh-dns-adapter.stderr.log.
func TestAdapterLogHasEachLineOnce(t *testing.T) {
	bins := t.TempDir()
	if err := Build(bins, "bosh-dns-adapter"); err != nil {
		t.Fatal(err)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()

	dir := t.TempDir()
	p := &Plan{Dir: dir, Bins: bins, Prefix: "10.244.7.", Ports: DefaultPorts(), Certs: TreeCerts(filepath.Join(dir, "certs"))}
	if _, err := mtls.WriteTree(filepath.Join(dir, "certs"), mtls.TreeOptions{}); err != nil {
		t.Fatal(err)
	}
	c := p.Cell(1)
	if err := os.MkdirAll(c.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := p.BoshDNSAdapter()
	cfg.Port = fmt.Sprint(taken.Addr().(*net.TCPAddr).Port)
	if _, err := WriteJSON(c.Dir, filepath.Base(c.AdapterConfig()), cfg); err != nil {
		t.Fatal(err)
	}

	s := c.AdapterSpec()
	s.Bin = filepath.Join(bins, s.Bin)
	proc, err := Spawn(s)
	if err != nil {
		t.Fatal(err)
	}
	if err, ok := proc.WaitTimeout(20 * time.Second); !ok {
		_ = proc.Stop(time.Second)
		t.Fatal("bosh-dns-adapter did not exit with its address taken")
	} else if err == nil {
		t.Fatal("bosh-dns-adapter exited 0 with its address taken")
	}

	message := fmt.Sprintf("bosh-dns-adapter.Address (127.0.0.1:%s) not available", cfg.Port)
	log := proc.Output()
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		seen[line]++
	}
	for line, n := range seen {
		if n > 1 {
			t.Errorf("bosh-dns-adapter.log has this line %d times: %s", n, line)
		}
	}
	if n := strings.Count(log, `"message":"`+message+`"`); n != 1 {
		t.Errorf("bosh-dns-adapter.log has %q %d times, want once:\n%s", message, n, log)
	}
	stderr, err := os.ReadFile(s.Stderr)
	if err != nil || !strings.Contains(string(stderr), message) {
		t.Errorf("bosh-dns-adapter.stderr.log (%v) lacks %q:\n%s", err, message, stderr)
	}
}
