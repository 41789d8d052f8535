package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/maintest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

func TestMain(m *testing.M) { os.Exit(maintest.Run(m, "silk-daemon-shutdown", main)) }

// TestRemovesTheIngressChain drains a single-IP VM whose daemon is already
// gone: the bootstrap's chain and jump are removed, nothing else.
func TestRemovesTheIngressChain(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, fl := range netnstest.IPTablesFlavors(t) {
		t.Run(string(fl), func(t *testing.T) { testRemovesTheIngressChain(t, fl) })
	}
}

func testRemovesTheIngressChain(t *testing.T, fl iptables.Flavor) {
	ns := netnstest.New(t, "shut")
	restore := ns.Command("iptables-"+string(fl)+"-restore", "--noflush")
	restore.Stdin = strings.NewReader("*filter\n:istio-ingress - [0:0]\n-A OUTPUT -o eth0 -j ACCEPT\n" +
		"-I OUTPUT 1 -j istio-ingress\n-A istio-ingress -o silk-vtep -j MARK --set-xmark 0x9/0xffffffff\n" +
		"-A istio-ingress -o silk-vtep -j ACCEPT\nCOMMIT\n")
	if out, err := restore.CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "container-metadata"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := maintest.Wrap("ip", "netns", "exec", ns.Name, os.Args[0],
		"--containerMetadataFile", filepath.Join(dir, "container-metadata", "store.json"),
		"--containerMetadataFileCheckInterval", "1", "--containerMetadataFileCheckTimeout", "1",
		"--silkDaemonUrl", "http://127.0.0.1:23954/ping", "--silkDaemonTimeout", "1",
		"--silkDaemonPidPath", filepath.Join(dir, "silk-daemon.pid"),
		"--iptablesLockFile", filepath.Join(dir, "iptables.lock"))
	cmd.Env = append(cmd.Env, "PATH="+netnstest.IPTablesBinDir(t, fl)+":"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	save := ns.Run(t, "iptables-"+string(fl)+"-save", "-t", "filter")
	if strings.Contains(save, "istio-ingress") || !strings.Contains(save, "-A OUTPUT -o eth0 -j ACCEPT") {
		t.Errorf("filter after shutdown:\n%s", save)
	}
}

func TestBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{nil, "silk-daemon-shutdown: -containerMetadataFile, -silkDaemonUrl, -silkDaemonPidPath and -iptablesLockFile are required\n"},
		{[]string{"--containerMetadataFile", "/s.json", "--silkDaemonUrl", "http://127.0.0.1:1/ping",
			"--silkDaemonPidPath", "/nope.pid", "--iptablesLockFile", "/l", "--silkDaemonTimeout", "0"},
			"silk-daemon-shutdown: -containerMetadataFileCheckInterval, -silkDaemonTimeout and -pingServerTimeout must be positive, -containerMetadataFileCheckTimeout not negative\n"},
	}
	for _, tc := range tests {
		if got := maintest.Fails(t, maintest.Command(tc.args...), 1); got != tc.want {
			t.Errorf("%v: stderr %q, want %q", tc.args, got, tc.want)
		}
	}
}
