package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// build compiles cni-wrapper-plugin and the fake delegate (CNI_PATH holds
// both, as on a cell).
func build(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "cni-wrapper-bin-")
		if buildErr != nil {
			return
		}
		for pkg, name := range map[string]string{".": "cni-wrapper-plugin", "./testdata/fakedelegate": "fake-delegate"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, name), pkg).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
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
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// agent is a fake policy agent force server listening inside the cell
// namespace (the plugin runs there and cannot reach the root namespace).
type agent struct {
	mu     sync.Mutex
	addr   string
	status map[string]int
	calls  []string
}

func startAgent(t *testing.T, ns *netnstest.NS) *agent {
	a := &agent{status: map[string]int{}}
	var l net.Listener
	if err := ns.Do(func() (err error) { l, err = net.Listen("tcp", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	a.addr = l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.calls = append(a.calls, r.URL.RequestURI())
		code, ok := a.status[r.URL.Path]
		a.mu.Unlock()
		if !ok {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return a
}

func (a *agent) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

type cell struct {
	t      *testing.T
	ns     *netnstest.NS
	ctr    *netnstest.NS // the container's namespace (CNI_NETNS)
	bin    string
	agent  *agent
	dir    string
	stdin  map[string]any
	record string
}

func newCell(t *testing.T, flavor string) *cell {
	t.Helper()
	netnstest.RequireRoot(t)
	netnstest.RequireIPTables(t, iptables.Flavor(flavor))
	c := &cell{t: t, bin: build(t), dir: t.TempDir()}
	c.ns = netnstest.New(t, "cwp")
	c.ctr = netnstest.New(t, "cwc")
	peer := netnstest.New(t, "cwq")
	netnstest.Veth(t, c.ns, "ul0", "10.244.0.5/24", peer, "ul1", "10.244.0.6/24")
	c.agent = startAgent(t, c.ns)
	c.record = filepath.Join(c.dir, "delegate.log")

	b, err := os.ReadFile("../../config/cni-wrapper-plugin.conflist")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Name       string           `json:"name"`
		CNIVersion string           `json:"cniVersion"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	s := list.Plugins[0]
	s["name"], s["cniVersion"] = list.Name, list.CNIVersion
	s["datastore"] = filepath.Join(c.dir, "container-metadata", "store.json")
	s["iptables_lock_file"] = filepath.Join(c.dir, "garden-cni", "iptables.lock")
	s["datastore_file_owner"], s["datastore_file_group"] = "root", "root"
	s["instance_address"] = "10.244.0.5"
	s["underlay_ips"] = []string{"10.244.0.5"}
	s["policy_agent_force_poll_address"] = c.agent.addr
	s["iptables_flavor"] = flavor
	s["delegate"] = map[string]any{"cniVersion": "1.0.0", "name": "silk", "type": "fake-delegate", "fake_ip": "10.255.30.5/24", "record": c.record}
	s["runtimeConfig"] = map[string]any{
		"portMappings": []any{map[string]any{"host_port": 61001, "container_port": 8080}},
		"netOutRules":  []any{map[string]any{"protocol": 1, "networks": []any{map[string]any{"start": "10.0.0.1", "end": "10.0.0.9"}}, "ports": []any{map[string]any{"start": 443, "end": 443}}, "log": true}},
	}
	s["metadata"] = map[string]any{"policy_group_id": "app-guid", "space_id": "space-guid", "container_workload": "app"}
	c.stdin = s
	return c
}

// run execs the plugin inside the cell namespace, as garden would through
// libcni.
func (c *cell) run(command, containerID string, stdin []byte) (stdout, stderr string, err error) {
	cmd := c.ns.Command(filepath.Join(c.bin, "cni-wrapper-plugin"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+c.ctr.Path,
		"CNI_IFNAME=eth0", "CNI_PATH="+c.bin)
	cmd.Stdin = bytes.NewReader(stdin)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (c *cell) stdinJSON() []byte {
	b, err := json.Marshal(c.stdin)
	if err != nil {
		c.t.Fatal(err)
	}
	return b
}

func (c *cell) save() string {
	return c.ns.Run(c.t, "iptables-"+c.stdin["iptables_flavor"].(string)+"-save")
}

func (c *cell) storeFile() string {
	b, err := os.ReadFile(c.stdin["datastore"].(string))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

// ours lists the lines of iptables-save that belong to netman containers.
func ours(save string) []string {
	var out []string
	for _, l := range strings.Split(save, "\n") {
		for _, p := range []string{"input--", "netout--", "overlay--", "netin--", "MASQUERADE"} {
			if strings.Contains(l, p) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

func TestAddAndDelBinary(t *testing.T) {
	for _, flavor := range []string{"nft", "legacy"} {
		t.Run(flavor, func(t *testing.T) {
			c := newCell(t, flavor)
			c.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
			// A rule the plugin must leave alone.
			c.ns.Run(t, "iptables-"+flavor, "-A", "FORWARD", "-s", "10.255.30.5/32", "-j", "ACCEPT")
			before := c.save()

			out, errOut, err := c.run("ADD", "app-1", c.stdinJSON())
			if err != nil {
				t.Fatalf("ADD: %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			var res struct {
				CNIVersion string `json:"cniVersion"`
				IPs        []struct {
					Address string `json:"address"`
				} `json:"ips"`
				DNS struct {
					Nameservers []string `json:"nameservers"`
				} `json:"dns"`
			}
			if err := json.Unmarshal([]byte(out), &res); err != nil {
				t.Fatalf("result %q: %v", out, err)
			}
			if res.CNIVersion != "1.0.0" || res.IPs[0].Address != "10.255.30.5/24" || !cmp.Equal(res.DNS.Nameservers, []string{"169.254.0.2"}) {
				t.Errorf("result %s", out)
			}
			wantStore := `{"app-1":{"handle":"app-1","ip":"10.255.30.5","metadata":{"container_workload":"app","policy_group_id":"app-guid","space_id":"space-guid"}}}` + "\n"
			if got := c.storeFile(); got != wantStore {
				t.Errorf("store.json:\n got %q\nwant %q", got, wantStore)
			}
			save := c.save()
			for _, want := range []string{
				"-A INPUT -s 10.255.30.5/32 -j input--app-1",
				"-A FORWARD -s 10.255.30.5/32 -o ul0 -j netout--app-1",
				"-A FORWARD -j overlay--app-1",
				"-A input--app-1 -d 169.254.0.2/32 -p udp -m udp --dport 53 -j ACCEPT",
				"-A input--app-1 -d 169.254.0.2/32 -p tcp -m tcp --dport 8080 -j ACCEPT",
				"-A netout--app-1 -p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 443 -g netout--app-1--log",
				"-A netout--app-1 -d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable",
				"-A overlay--app-1 -d 10.255.30.5/32 -m mark --mark 0xffff0000 -j ACCEPT",
				"-A netin--app-1 -d 10.244.0.5/32 -p tcp -m tcp --dport 61001 -j DNAT --to-destination 10.255.30.5:8080",
				"-A netin--app-1 -d 10.244.0.5/32 -i ul0 -p tcp -m tcp --dport 61001 -j MARK --set-xmark 0xffff0000/0xffffffff",
				"-A POSTROUTING -s 10.255.30.5/32 ! -d 10.255.0.0/16 ! -o silk-vtep -j MASQUERADE",
			} {
				if !strings.Contains(save, want+"\n") {
					t.Errorf("missing %q in\n%s", want, save)
				}
			}
			if diff := cmp.Diff([]string{"/force-policy-poll-cycle", "/force-asgs-for-container?container=app-1"}, c.agent.got()); diff != "" {
				t.Errorf("agent calls (-want +got):\n%s", diff)
			}

			out, errOut, err = c.run("DEL", "app-1", c.stdinJSON())
			if err != nil {
				t.Fatalf("DEL: %v\nstdout: %s\nstderr: %s", err, out, errOut)
			}
			if got := c.storeFile(); got != "{}\n" {
				t.Errorf("store after DEL %q", got)
			}
			if diff := cmp.Diff(ours(before), ours(c.save())); diff != "" {
				t.Errorf("DEL left rules (-before +after):\n%s", diff)
			}
			if !strings.Contains(c.save(), "-A FORWARD -s 10.255.30.5/32 -j ACCEPT") {
				t.Error("DEL removed a foreign rule")
			}
			calls := c.agent.got()
			if calls[len(calls)-1] != "/force-orphaned-asgs-cleanup?container=app-1" {
				t.Errorf("agent calls %q", calls)
			}
			rec, _ := os.ReadFile(c.record)
			if string(rec) != "ADD app-1 1.0.0\nDEL app-1 1.0.0\n" {
				t.Errorf("delegate calls %q", rec)
			}
			// DEL is idempotent.
			if out, errOut, err := c.run("DEL", "app-1", c.stdinJSON()); err != nil {
				t.Fatalf("second DEL: %v\n%s\n%s", err, out, errOut)
			}
		})
	}
}

func TestBadInputFailsCleanly(t *testing.T) {
	c := newCell(t, "legacy")
	missingDelegate := func() []byte {
		s := c.stdinJSON()
		return bytes.Replace(s, []byte(`"fake-delegate"`), []byte(`"silk-cni-not-installed"`), 1)
	}
	failingDelegate := func() []byte {
		c.stdin["delegate"].(map[string]any)["fail"] = "no lease available"
		defer delete(c.stdin["delegate"].(map[string]any), "fail")
		return c.stdinJSON()
	}
	badVersion := func() []byte {
		c.stdin["cniVersion"] = "9.9.9"
		defer func() { c.stdin["cniVersion"] = "1.0.0" }()
		return c.stdinJSON()
	}
	missingKey := func() []byte {
		v := c.stdin["vtep_name"]
		delete(c.stdin, "vtep_name")
		defer func() { c.stdin["vtep_name"] = v }()
		return c.stdinJSON()
	}
	agentDown := func() []byte {
		c.stdin["policy_agent_force_poll_address"] = "127.0.0.1:1"
		defer func() { c.stdin["policy_agent_force_poll_address"] = c.agent.addr }()
		return c.stdinJSON()
	}
	before := c.save()
	for _, tc := range []struct {
		name  string
		stdin []byte
		code  int
		msg   string
	}{
		{"malformed stdin", []byte(`{"name": "cni-wrapper", `), 6, "error unmarshall network config"},
		{"missing delegate", missingDelegate(), 999, `delegate call: failed to find plugin "silk-cni-not-installed"`},
		{"failing delegate", failingDelegate(), 999, "delegate call: no lease available"},
		{"unknown cniVersion", badVersion(), 1, "incompatible CNI versions"},
		{"missing config key", missingKey(), 999, "missing vtep device name"},
		{"policy agent down", agentDown(), 999, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := c.run("ADD", "app-2", tc.stdin)
			if err == nil {
				t.Fatalf("ADD succeeded: %s", out)
			}
			var cniErr struct {
				Code int    `json:"code"`
				Msg  string `json:"msg"`
			}
			if jerr := json.Unmarshal([]byte(out), &cniErr); jerr != nil {
				t.Fatalf("stdout is not a CNI error: %q (stderr %q)", out, errOut)
			}
			if cniErr.Code != tc.code || !strings.Contains(cniErr.Msg, tc.msg) {
				t.Errorf("got code %d %q, want %d containing %q", cniErr.Code, cniErr.Msg, tc.code, tc.msg)
			}
			if got := c.storeFile(); got != "" && got != "{}\n" {
				t.Errorf("store entry left: %q", got)
			}
			if diff := cmp.Diff(ours(before), ours(c.save())); diff != "" {
				t.Errorf("rules left behind (-before +after):\n%s", diff)
			}
		})
	}
}

func TestVersionCommand(t *testing.T) {
	netnstest.RequireRoot(t) // only to build once with the others
	cmd := exec.Command(filepath.Join(build(t), "cni-wrapper-plugin"))
	cmd.Env = append(os.Environ(), "CNI_COMMAND=VERSION")
	out, err := cmd.Output()
	if err != nil || !strings.Contains(string(out), `"1.0.0"`) {
		t.Errorf("VERSION: %v %s", err, out)
	}
}
