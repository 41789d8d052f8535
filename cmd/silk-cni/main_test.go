package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// pluginDir builds silk-cni once per test binary into a directory usable
// as CNI_PATH.
func pluginDir(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "silk-cni-bin")
		if buildErr != nil {
			return
		}
		out, err := exec.Command(goTool(), "build", "-o", filepath.Join(binDir, "silk-cni"), ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(os.Getenv("GOROOT"), "bin", "go")
}

// hostWithDaemon makes a "cell" namespace with a fake silk-daemon listening
// on 127.0.0.1 inside it: the listener is created in the namespace, so the
// plugin, run in that namespace, reaches it exactly as on a cell. With
// ipv6 (an overlay /96) the daemon is a dual-stack one.
func hostWithDaemon(t testing.TB, subnet string, ipv6 ...string) (*netnstest.NS, int, *httptest.Server) {
	t.Helper()
	host := netnstest.New(t, "h")
	var ln net.Listener
	if err := host.Do(func() (err error) {
		ln, err = net.Listen("tcp4", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(ipv6) > 0 {
			fmt.Fprintf(w, `{"overlay_subnet":%q,"mtu":1450,"ipv6_overlay_network":%q}`, subnet, ipv6[0])
			return
		}
		fmt.Fprintf(w, `{"overlay_subnet":%q,"mtu":1450}`, subnet)
	}))
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return host, ln.Addr().(*net.TCPAddr).Port, srv
}

type env struct {
	host      *netnstest.NS
	port      int
	dataDir   string
	datastore string
	cniPath   string
}

func newEnv(t *testing.T, subnet string, ipv6 ...string) (*env, *httptest.Server) {
	netnstest.RequireRoot(t)
	host, port, srv := hostWithDaemon(t, subnet, ipv6...)
	dir := t.TempDir()
	return &env{host: host, port: port, dataDir: filepath.Join(dir, "host-local"),
		datastore: filepath.Join(dir, "silk", "store.json"), cniPath: pluginDir(t)}, srv
}

func (e *env) conf(v string, extra string) string {
	return fmt.Sprintf(`{"cniVersion":%q,"name":"silk","type":"silk-cni","daemonPort":%d,"dataDir":%q,"datastore":%q,"mtu":0%s}`,
		v, e.port, e.dataDir, e.datastore, extra)
}

// run execs the plugin in the host namespace with CNI_* variables.
func (e *env) run(t *testing.T, command, containerID, netnsPath, stdin string) (stdout []byte, err error) {
	t.Helper()
	cmd := e.host.Command(filepath.Join(e.cniPath, "silk-cni"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH="+e.cniPath)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	if err != nil {
		t.Logf("%s stderr: %s", command, errOut.String())
	}
	return out.Bytes(), err
}

func TestVersion(t *testing.T) {
	cmd := exec.Command(filepath.Join(pluginDir(t), "silk-cni"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	cmd.Stdin = strings.NewReader(`{"cniVersion":"1.0.0"}`)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	info, err := (&version.PluginDecoder{}).Decode(out)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}; !slices.Equal(info.SupportedVersions(), want) {
		t.Errorf("versions %v", info.SupportedVersions())
	}
}

func TestBinaryAddCheckDel(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e, _ := newEnv(t, "10.255.9.0/24")
			ctr := netnstest.New(t, "c")

			out, err := e.run(t, "ADD", "ctr-1", ctr.Path, e.conf(v, ""))
			if err != nil {
				t.Fatalf("ADD: %v: %s", err, out)
			}
			res, err := version.NewResult(v, out)
			if err != nil {
				t.Fatalf("result does not parse as %s: %v\n%s", v, err, out)
			}
			cur, err := current.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(cur.IPs) != 1 || cur.IPs[0].Address.String() != "10.255.9.2/32" {
				t.Fatalf("result %s", out)
			}
			ctr.Run(t, "ip", "link", "show", "eth0")
			e.host.Run(t, "ip", "link", "show", "s-010255009002")

			if v >= "0.4.0" {
				check := e.conf(v, `,"prevResult":`+strings.TrimSpace(string(out)))
				if out, err := e.run(t, "CHECK", "ctr-1", ctr.Path, check); err != nil {
					t.Errorf("CHECK: %v: %s", err, out)
				}
			}
			for range 2 {
				if out, err := e.run(t, "DEL", "ctr-1", ctr.Path, e.conf(v, "")); err != nil {
					t.Fatalf("DEL: %v: %s", err, out)
				}
			}
			if out := e.host.Run(t, "ip", "-o", "link", "show"); strings.Contains(out, "s-0") {
				t.Errorf("host links left: %s", out)
			}
			if files, _ := filepath.Glob(filepath.Join(e.dataDir, "ipam", "silk", "10.*")); len(files) != 0 {
				t.Errorf("reservations left: %v", files)
			}
		})
	}
}

func TestBinaryErrors(t *testing.T) {
	e, srv := newEnv(t, "10.255.9.0/24")
	ctr := netnstest.New(t, "c")
	tests := []struct {
		name, stdin string
		before      func()
		code        uint
		msg         string
	}{
		{name: "malformed stdin", stdin: `{"cniVersion":`, code: types.ErrDecodingFailure},
		{name: "unknown cniVersion", stdin: e.conf("42.0.0", ""), code: types.ErrIncompatibleCNIVersion, msg: "incompatible CNI versions"},
		// A repeated key: the last "mtu" wins.
		{name: "bad mtu", stdin: e.conf("1.0.0", `,"mtu":-5`), code: types.ErrInvalidNetworkConfig, msg: "invalid network config"},
		{name: "daemon down", stdin: e.conf("1.0.0", ""), before: srv.Close, code: 100, msg: "discover network info"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.before != nil {
				tt.before()
			}
			out, err := e.run(t, "ADD", "ctr-1", ctr.Path, tt.stdin)
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			var cniErr types.Error
			if err := json.Unmarshal(out, &cniErr); err != nil {
				t.Fatalf("stdout is not a CNI error: %q", out)
			}
			if cniErr.Code != tt.code || (tt.msg != "" && cniErr.Msg != tt.msg) {
				t.Errorf("error %+v, want code %d msg %q", cniErr, tt.code, tt.msg)
			}
			if l := ctr.Run(t, "ip", "-o", "link", "show"); strings.Count(l, "\n") != 1 {
				t.Errorf("container links: %s", l)
			}
		})
	}
}

func TestBinaryStatus(t *testing.T) {
	e, srv := newEnv(t, "10.255.9.0/24")
	if out, err := e.run(t, "STATUS", "", "", e.conf("1.1.0", "")); err != nil {
		t.Fatalf("STATUS: %v: %s", err, out)
	}
	srv.Close()
	out, err := e.run(t, "STATUS", "", "", e.conf("1.1.0", ""))
	var cniErr types.Error
	if err == nil || json.Unmarshal(out, &cniErr) != nil || cniErr.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS with the daemon down: %v %s", err, out)
	}
}
