package cniwrapper

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/iptables/iptablestest"
	"github.com/netman-release/netman/src/metadata"
	"github.com/netman-release/netman/src/testsupport/configtest"
)

// fakeDelegate stands in for silk-cni: it hands out one address per
// container and takes it back on DEL.
type fakeDelegate struct {
	mu      sync.Mutex
	ip      string
	addErr  error
	held    map[string]bool // container IPs handed out
	adds    int
	dels    int
	lastCfg map[string]any
}

func (d *fakeDelegate) Add(_ context.Context, typ string, conf []byte) (types.Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.adds++
	if d.addErr != nil {
		return nil, d.addErr
	}
	_ = jsonUnmarshal(conf, &d.lastCfg)
	if typ != "silk-cni" {
		return nil, errors.New("wrong delegate type " + typ)
	}
	d.held[d.ip] = true
	_, ipn, _ := net.ParseCIDR(d.ip + "/24")
	ipn.IP = net.ParseIP(d.ip)
	return &types100.Result{CNIVersion: "1.0.0", IPs: []*types100.IPConfig{{Address: *ipn}}}, nil
}

func (d *fakeDelegate) Del(context.Context, string, []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dels++
	delete(d.held, d.ip)
	return nil
}

// fakeAgent is the policy agent's force server.
type fakeAgent struct {
	mu     sync.Mutex
	status map[string]int // path → status; default 200
	calls  []string
	srv    *httptest.Server
}

func newFakeAgent(t testing.TB) *fakeAgent {
	a := &fakeAgent{status: map[string]int{}}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.calls = append(a.calls, r.URL.RequestURI())
		code, ok := a.status[r.URL.Path]
		a.mu.Unlock()
		if !ok {
			code = http.StatusOK
		}
		w.WriteHeader(code)
		if code != http.StatusOK {
			_, _ = w.Write([]byte("agent says " + http.StatusText(code)))
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *fakeAgent) addr() string { return strings.TrimPrefix(a.srv.URL, "http://") }

func (a *fakeAgent) got() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

type harness struct {
	plugin   *Plugin
	tables   *iptablestest.Tables
	tables6  *iptablestest.Tables // ip6tables
	delegate *fakeDelegate
	agent    *fakeAgent
	stderr   *bytes.Buffer
	stdin    map[string]any
	dir      string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{
		tables:   iptablestest.New(),
		tables6:  iptablestest.New(),
		delegate: &fakeDelegate{ip: "10.255.17.5", held: map[string]bool{}},
		agent:    newFakeAgent(t),
		stderr:   &bytes.Buffer{},
		dir:      dir,
	}
	h.stdin = exampleStdin(t)
	h.stdin["datastore"] = filepath.Join(dir, "container-metadata", "store.json")
	h.stdin["iptables_lock_file"] = filepath.Join(dir, "garden-cni", "iptables.lock")
	h.stdin["datastore_file_owner"], h.stdin["datastore_file_group"] = "", ""
	h.stdin["policy_agent_force_poll_address"] = h.agent.addr()
	h.stdin["metadata"] = map[string]any{"policy_group_id": "app-guid", "space_id": "space-guid", "container_workload": "app"}
	h.stdin["runtimeConfig"] = map[string]any{
		"portMappings": []any{map[string]any{"host_port": 61001, "container_port": 8080}},
		"netOutRules":  []any{map[string]any{"protocol": 1, "networks": []any{map[string]any{"start": "10.0.0.1", "end": "10.0.0.9"}}, "ports": []any{map[string]any{"start": 443, "end": 443}}}},
	}
	h.plugin = &Plugin{
		Delegate:   h.delegate,
		Tables:     func(*Config) Tables { return h.tables },
		Tables6:    func(*Config) Tables { return h.tables6 },
		Store:      func(cfg *Config) Store { return metadata.New(cfg.Datastore) },
		HTTP:       http.DefaultClient,
		Interfaces: func([]string) ([]string, error) { return []string{"eth0"}, nil },
		Stderr:     h.stderr,
	}
	return h
}

func (h *harness) args(t *testing.T) *skel.CmdArgs {
	return &skel.CmdArgs{ContainerID: "container-1", Netns: "/run/netns/x", IfName: "eth0", StdinData: configtest.JSON(t, h.stdin)}
}

func (h *harness) store() *metadata.Store { return metadata.New(h.stdin["datastore"].(string)) }

func (h *harness) dump() string {
	return dumpAll(h.tables)
}

var emptyTables = dumpAll(iptablestest.New())

func TestAddWithDynamicASGs(t *testing.T) {
	h := newHarness(t)
	res, err := h.plugin.Add(t.Context(), h.args(t))
	if err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	r := res.(*types100.Result)
	if r.CNIVersion != "1.0.0" || r.IPs[0].Address.IP.String() != "10.255.17.5" {
		t.Errorf("result %+v", r)
	}
	if !cmp.Equal(r.DNS.Nameservers, []string{"169.254.0.2"}) {
		t.Errorf("nameservers %q: want every dns_servers entry", r.DNS.Nameservers)
	}
	all, err := h.store().ReadAll(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]metadata.Container{"container-1": {Handle: "container-1", IP: "10.255.17.5",
		Metadata: map[string]any{"policy_group_id": "app-guid", "space_id": "space-guid", "container_workload": "app"}}}
	if diff := cmp.Diff(want, all); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"/force-policy-poll-cycle", "/force-asgs-for-container?container=container-1"}, h.agent.got()); diff != "" {
		t.Errorf("agent calls (-want +got):\n%s", diff)
	}
	ch := ChainsFor("container-1")
	st, _ := h.tables.Save(t.Context(), iptables.Filter)
	// The agent owns the egress rules: the chain holds only the default.
	if got := st.Rules(ch.NetOut); !cmp.Equal(got, []iptables.Rule{"-j REJECT --reject-with icmp-port-unreachable"}) {
		t.Errorf("netout: %q", got)
	}
	if h.tables.Applied != 1 {
		t.Errorf("%d restore calls, want 1", h.tables.Applied)
	}
	if h.delegate.lastCfg["cniVersion"] != "1.0.0" || h.delegate.lastCfg["daemonPort"] != float64(23954) {
		t.Errorf("delegate config %v", h.delegate.lastCfg)
	}
	fi, err := os.Stat(h.stdin["iptables_lock_file"].(string))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != 0 {
		t.Errorf("lock file: %v %v", fi, err)
	}
}

func TestAddWithStaticNetOutRules(t *testing.T) {
	h := newHarness(t)
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	if _, err := h.plugin.Add(t.Context(), h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	st, _ := h.tables.Save(t.Context(), iptables.Filter)
	want := []iptables.Rule{
		"-m state --state RELATED,ESTABLISHED -j ACCEPT",
		"-p tcp -m state --state INVALID -j DROP",
		"-d 169.254.169.254/32 -j REJECT --reject-with icmp-port-unreachable",
		"-p tcp -m iprange --dst-range 10.0.0.1-10.0.0.9 -m tcp --dport 443 -j ACCEPT",
		"-j REJECT --reject-with icmp-port-unreachable",
	}
	if diff := cmp.Diff(want, st.Rules(ChainsFor("container-1").NetOut)); diff != "" {
		t.Errorf("netout (-want +got):\n%s", diff)
	}
	if h.tables.Applied != 2 {
		t.Errorf("%d restore calls, want 2", h.tables.Applied)
	}
}

func TestAddFailuresRollBack(t *testing.T) {
	for _, tc := range []struct {
		name      string
		setup     func(*harness)
		want      string
		delegated bool // the delegate ran, so its DEL must too
		orphanASG bool // the agent is asked to drop the container's ASG chain
	}{
		{"delegate fails", func(h *harness) { h.delegate.addErr = errors.New("no lease") }, "delegate call: no lease", false, false},
		{"store fails", func(h *harness) {
			blocker := filepath.Join(h.dir, "file")
			_ = os.WriteFile(blocker, nil, 0o600)
			h.stdin["datastore"] = filepath.Join(blocker, "store.json")
		}, "store add: ", true, false},
		{"policy poll fails", func(h *harness) { h.agent.status["/force-policy-poll-cycle"] = 500 }, "vpa response code: 500 with message: agent says Internal Server Error", true, false},
		{"agent unreachable", func(h *harness) { h.stdin["policy_agent_force_poll_address"] = "127.0.0.1:1" }, "connection refused", true, false},
		{"bad input", func(h *harness) { h.stdin["dns_servers"] = []string{"nope"} }, `invalid DNS server "nope", must be valid IP address`, true, false},
		{"no host port", func(h *harness) {
			h.stdin["runtimeConfig"] = map[string]any{"portMappings": []any{map[string]any{"host_port": 0, "container_port": 8080}}}
		}, "cannot allocate port 0", true, false},
		{"interface lookup fails", func(h *harness) {
			h.plugin.Interfaces = func([]string) ([]string, error) { return nil, errors.New("no such ip") }
		}, "looking up interface names: no such ip", true, false},
		{"iptables fails", func(h *harness) { h.tables.FailNext = errors.New("restore said no") }, "installing iptables rules: restore said no", true, true},
		{"asg sync fails", func(h *harness) { h.agent.status["/force-asgs-for-container"] = 500 }, "asg sync returned 500 with message: agent says Internal Server Error", true, true},
		{"bad cniVersion for result", func(h *harness) { h.stdin["cniVersion"] = "0.0.7" }, "converting to CNI version 0.0.7", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			tc.setup(h)
			_, err := h.plugin.Add(t.Context(), h.args(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if got := h.dump(); got != emptyTables {
				t.Errorf("rules left behind:\n%s", got)
			}
			if all, err := h.store().ReadAll(t.Context()); err == nil && len(all) != 0 {
				t.Errorf("store entry left behind: %v", all)
			}
			if len(h.delegate.held) != 0 {
				t.Error("delegate address not released")
			}
			if tc.delegated && h.delegate.dels != 1 {
				t.Errorf("delegate DEL ran %d times", h.delegate.dels)
			}
			orphan := false
			for _, c := range h.agent.got() {
				orphan = orphan || strings.HasPrefix(c, "/force-orphaned-asgs-cleanup?container=container-1")
			}
			if orphan != tc.orphanASG {
				t.Errorf("orphan ASG cleanup called %v, want %v (calls %q)", orphan, tc.orphanASG, h.agent.got())
			}
		})
	}
}

func TestAddRejectsBadConfigBeforeDelegating(t *testing.T) {
	h := newHarness(t)
	delete(h.stdin, "vtep_name")
	if _, err := h.plugin.Add(t.Context(), h.args(t)); err == nil || err.Error() != "missing vtep device name" {
		t.Fatalf("got %v", err)
	}
	if h.delegate.adds != 0 {
		t.Error("delegate called with a bad config")
	}
}

func TestAddConvertsResultToConfigVersion(t *testing.T) {
	h := newHarness(t)
	h.stdin["cniVersion"] = "0.4.0"
	res, err := h.plugin.Add(t.Context(), h.args(t))
	if err != nil {
		t.Fatal(err)
	}
	if res.Version() != "0.4.0" {
		t.Errorf("result version %s", res.Version())
	}
}

func TestDelRemovesEverythingAddInstalled(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	foreign := iptables.NewTx(iptables.Filter).Append("FORWARD", "-s 10.255.17.5/32 -j ACCEPT")
	if err := h.tables.Apply(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	before := h.dump()
	h.agent.status["/force-asgs-for-container"] = http.StatusMethodNotAllowed
	if _, err := h.plugin.Add(ctx, h.args(t)); err != nil {
		t.Fatal(err)
	}
	h.agent.status["/force-orphaned-asgs-cleanup"] = http.StatusMethodNotAllowed
	if err := h.plugin.Del(ctx, h.args(t)); err != nil {
		t.Fatalf("%v\nstderr: %s", err, h.stderr)
	}
	if diff := cmp.Diff(before, h.dump()); diff != "" {
		t.Errorf("DEL left (-before +after):\n%s", diff)
	}
	if all, _ := h.store().ReadAll(ctx); len(all) != 0 {
		t.Errorf("store: %v", all)
	}
	if h.delegate.dels != 1 {
		t.Errorf("delegate DEL ran %d times", h.delegate.dels)
	}
	calls := h.agent.got()
	if calls[len(calls)-1] != "/force-orphaned-asgs-cleanup?container=container-1" {
		t.Errorf("agent calls %q", calls)
	}

	// DEL again: nothing there, still fine.
	h.stderr.Reset()
	if err := h.plugin.Del(ctx, h.args(t)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, h.dump()); diff != "" {
		t.Errorf("second DEL changed tables:\n%s", diff)
	}
}

func TestDelFailsOnlyOnConfigAndASGCleanup(t *testing.T) {
	h := newHarness(t)
	if _, err := h.plugin.Add(t.Context(), h.args(t)); err != nil {
		t.Fatal(err)
	}
	h.agent.status["/force-orphaned-asgs-cleanup"] = 500
	h.tables.FailNext = errors.New("restore said no")
	err := h.plugin.Del(t.Context(), h.args(t))
	if err == nil || err.Error() != "asg cleanup returned 500 with message: agent says Internal Server Error" {
		t.Errorf("got %v", err)
	}
	if !strings.Contains(h.stderr.String(), "net out cleanup: restore said no") {
		t.Errorf("iptables error not reported on stderr: %q", h.stderr)
	}
	delete(h.stdin, "datastore")
	if err := h.plugin.Del(t.Context(), h.args(t)); err == nil || err.Error() != "missing datastore path" {
		t.Errorf("got %v", err)
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
