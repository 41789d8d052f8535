package lab

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReport(t *testing.T) {
	r := Report{
		Frontend: AppState{Name: "frontend", Cell: 1, IP: "10.255.1.2", Port: 8080},
		Backend:  AppState{Name: "backend", Cell: 2, IP: "10.255.2.2", Port: 8080},
		Steps: []Step{
			{Title: "no policy", Detail: "connection refused"},
			{Title: "policy added", Action: "POST /networking/v1/external/policies", Allowed: true, After: 87 * time.Millisecond, Detail: "200 hello"},
			{Title: "policy removed", Action: "POST /networking/v1/external/policies/delete", After: 31 * time.Millisecond, Detail: "connection refused"},
		},
	}
	if got := r.Sequence(); got != "denied → allowed → denied" {
		t.Errorf("sequence %q", got)
	}
	withASG := r
	withASG.Steps = append(append([]Step(nil), r.Steps...),
		Step{Title: "no ASG", From: "egress", To: "outside"},
		Step{Title: "ASG bound", From: "egress", To: "outside", Allowed: true},
		Step{Title: "ASG deleted", From: "egress", To: "outside"})
	if got, want := withASG.Sequence(), "c2c denied → allowed → denied, asg denied → allowed → denied"; got != want {
		t.Errorf("sequence with an ASG act %q, want %q", got, want)
	}
	s := r.String()
	for _, want := range []string{
		"frontend (cell 1, 10.255.1.2) calls backend (cell 2, 10.255.2.2:8080)",
		"frontend → backend: DENIED\n",
		"frontend → backend: ALLOWED within 87 ms of the API's answer",
		"frontend → backend: DENIED within 31 ms of the API's answer",
		"result: denied → allowed → denied\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

// TestReportOverIPv6: a dual-stack lab's report has its IPv6 acts after the
// IPv4 ones, and its sequence (what up's summary line says) names them.
func TestReportOverIPv6(t *testing.T) {
	acts := []Step{
		{Title: "no policy"}, {Title: "policy added", Action: "POST", Allowed: true, After: 44 * time.Millisecond}, {Title: "policy removed", Action: "POST delete", After: 51 * time.Millisecond},
		{Title: "no ASG", From: "frontend", To: "outside [fd6c:6162:f4:7::1]:9443"},
		{Title: "ASG bound", Action: "bind", From: "frontend", To: "outside [fd6c:6162:f4:7::1]:9443", Allowed: true, After: 197 * time.Millisecond, Since: "Cloud Controller's answer"},
		{Title: "ASG removed", Action: "delete", From: "frontend", To: "outside [fd6c:6162:f4:7::1]:9443", After: time.Second, Since: "Cloud Controller's answer"},
	}
	r6 := Report{Family: "IPv6", Frontend: AppState{Name: "frontend", Cell: 1, IP: "fd73:696c:6b::aff:102", Calls: "http://[fd73:696c:6b::aff:202]:8080/"},
		Backend: AppState{Name: "backend", Cell: 2, IP: "fd73:696c:6b::aff:202", Port: 8080}, Steps: acts}
	r := Report{Frontend: AppState{Name: "frontend", Cell: 1, IP: "10.255.1.2"}, Backend: AppState{Name: "backend", Cell: 2, IP: "10.255.2.2", Port: 8080}, Steps: acts, IPv6: &r6}
	const seq = "c2c denied → allowed → denied, asg denied → allowed → denied"
	if got, want := r.Sequence(), seq+"; over IPv6: "+seq; got != want {
		t.Errorf("sequence %q, want %q", got, want)
	}
	s := r.String()
	for _, want := range []string{
		"cats and dogs: frontend (cell 1, 10.255.1.2) calls backend (cell 2, 10.255.2.2:8080)",
		"result: " + seq + "\n\ncats and dogs over IPv6: frontend (cell 1, fd73:696c:6b::aff:102) calls http://[fd73:696c:6b::aff:202]:8080/",
		"frontend → outside [fd6c:6162:f4:7::1]:9443: ALLOWED within 197 ms of Cloud Controller's answer",
		"result: " + seq + "; over IPv6: " + seq + "\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
}

func TestStateLedgerAndDownWithoutLab(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	if err := Down(context.Background(), dir, nil); err != nil {
		t.Fatalf("down with no lab: %v", err)
	}
	if _, err := Load(dir); err != ErrNotRunning {
		t.Fatalf("load: %v", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	st := &State{Dir: dir, Names: "nmx"}
	proc := &Proc{Name: "sleep", PID: 1, Start: 42, Log: "x.log"}
	if err := st.Made(Resource{Kind: KindProc, Proc: proc}); err != nil {
		t.Fatal(err)
	}
	if err := st.Made(Resource{Kind: KindNetns, Name: "nmx-cell1"}); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(st.Undo, got.Undo, cmp.AllowUnexported(Proc{}), cmp.FilterPath(func(p cmp.Path) bool {
		return p.Last().String() == ".mu" || p.Last().String() == ".done"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("ledger (-saved +loaded):\n%s", diff)
	}
	// A directory with things in it but no state is not the lab's to remove.
	other := t.TempDir()
	if err := os.WriteFile(filepath.Join(other, "keep"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Down(context.Background(), other, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(other, "keep")); err != nil {
		t.Errorf("down touched a directory without a lab: %v", err)
	}
}

// TestProcByPID: a process known only by its recorded PID and start time
// (a later `down`) is stopped; a PID whose start time differs is not ours.
func TestProcByPID(t *testing.T) {
	dir := t.TempDir()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Fatalf("coreutils' sleep is missing: %v", err)
	}
	p, err := Spawn(Spec{Log: filepath.Join(dir, "sleep.log"), Bin: sleep, Args: []string{"30"}, Detach: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = p.Stop(time.Second) }()
	recorded := &Proc{Name: p.Name, PID: p.PID, Start: p.Start, Log: p.Log} // as Load gives it
	if recorded.Exited() {
		t.Fatal("a running process reads as exited")
	}
	impostor := &Proc{Name: "other", PID: p.PID, Start: p.Start + 1}
	if !impostor.Exited() {
		t.Error("a process with another start time reads as ours")
	}
	if err := impostor.Signal(syscall.SIGKILL); err != nil || p.Exited() {
		t.Fatalf("signalled a process that is not ours: %v", err)
	}
	go func() { _, _ = p.WaitTimeout(10 * time.Second) }() // reap it, as its starter does
	if err := recorded.Stop(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	if !recorded.Exited() {
		t.Error("still running after Stop")
	}
}

func TestTail(t *testing.T) {
	for _, c := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\nc", 5, "a\nb\nc"},
		{"", 3, ""},
		{"only\n", 1, "only"},
	} {
		if got := tail(c.in, c.n); got != c.want {
			t.Errorf("tail(%q, %d) = %q, want %q", c.in, c.n, got, c.want)
		}
	}
}

func TestOptionsDefaultsAndValidation(t *testing.T) {
	o := Options{}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Cells != 2 || o.Apps != 2 || o.DB != DBSQLite || o.Backend != BackendIPTables || o.Names != "nmlab" || o.Underlay != "10.244.0." || o.Ports != DefaultPorts() || !filepath.IsAbs(o.Dir) {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []Options{{Apps: 1}, {DB: "oracle"}, {Backend: "ebpf"}, {Names: "Bad-Name"}, {Names: "waytoolongname"}, {Underlay: "10.244.0.0/24"}, {Cells: -1}} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
	if got := appCell(3, 2); got != 1 {
		t.Errorf("app 3 of 2 cells on cell %d", got)
	}
	if appName(1) != "frontend" || appName(2) != "backend" || appName(3) != "app-3" {
		t.Error("app names")
	}
}

func TestUnescapeMount(t *testing.T) {
	if got := unescapeMount(`/tmp/with\040space/x`); got != "/tmp/with space/x" {
		t.Errorf("got %q", got)
	}
}

func TestReportShowsTheLookup(t *testing.T) {
	r := Report{
		Frontend: AppState{Name: "frontend", Cell: 1, IP: "10.255.1.2", Port: 8080, Calls: "http://backend.apps.internal:8080/"},
		Backend:  AppState{Name: "backend", Cell: 2, IP: "10.255.2.2", Port: 8080},
		Lookup:   Lookup{Name: "backend.apps.internal", Server: "169.254.0.53", IPs: []string{"10.255.2.2"}, Took: 1500 * time.Microsecond},
		Steps:    []Step{{Title: "no policy", Detail: "dial tcp 10.255.2.2:8080: connect: connection refused"}},
	}
	want := "cats and dogs: frontend (cell 1, 10.255.1.2) calls http://backend.apps.internal:8080/ every few ms over the overlay\n" +
		"  name lookup       backend.apps.internal → 10.255.2.2 (backend, cell 2) from frontend's container:\n" +
		"                    DNS 169.254.0.53 → bosh-dns-adapter → service-discovery-controller, 1 ms\n" +
		"  1. no policy      frontend → backend: DENIED\n" +
		"                    (dial tcp 10.255.2.2:8080: connect: connection refused)\n" +
		"result: denied\n"
	if diff := cmp.Diff(want, r.String()); diff != "" {
		t.Errorf("report (-want +got):\n%s", diff)
	}
}

// TestResolvConfLedger: the container's resolv.conf under /etc/netns and
// the directories made for it are in the ledger, and Down removes them,
// leaving a directory another lab still uses.
func TestResolvConfLedger(t *testing.T) {
	etc := filepath.Join(t.TempDir(), "netns")
	defer func(old string) { EtcNetns = old }(EtcNetns)
	EtcNetns = etc
	dir := filepath.Join(t.TempDir(), "lab")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	u := &upper{st: &State{Dir: dir, Names: "nmx"}}
	if err := u.writeResolvConf("nmx-frontend", []string{DNSServer}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(etc, "nmx-frontend", "resolv.conf"))
	if err != nil || !strings.Contains(string(b), "\nnameserver 169.254.0.53\n") {
		t.Fatalf("resolv.conf: %v %q", err, b)
	}
	if err := u.writeResolvConf("nmx-frontend", []string{DNSServer}); err == nil {
		t.Error("overwrote a resolv.conf")
	}
	if len(u.st.Undo) != 3 {
		t.Errorf("ledger %+v: want the two directories and the file", u.st.Undo)
	}
	// Another lab's namespace shares /etc/netns.
	if err := os.Mkdir(filepath.Join(etc, "other"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Down(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(etc, "nmx-frontend")); !os.IsNotExist(err) {
		t.Errorf("namespace's directory left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(etc, "other")); err != nil {
		t.Errorf("another lab's directory removed: %v", err)
	}
}

func TestListeningOnAll(t *testing.T) {
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if port := l.Addr().(*net.TCPAddr).Port; !listeningOnAll(port) {
		t.Errorf("port %d on 0.0.0.0 not seen", port)
	}
	lo, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lo.Close()
	if port := lo.Addr().(*net.TCPAddr).Port; listeningOnAll(port) {
		t.Errorf("port %d on 127.0.0.1 taken for every address", port)
	}
}

// TestDownRestoresSysctl: a kernel setting up changed (KindSysctl) gets
// the value it had back at down (here a file standing in for the
// /proc/sys one).
func TestDownRestoresSysctl(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "lab")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	setting := filepath.Join(t.TempDir(), "nf_log_all_netns")
	if err := os.WriteFile(setting, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := &State{Dir: dir, Names: "nmx"}
	if err := st.Made(Resource{Kind: KindSysctl, Name: setting, Config: "0"}); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	if err := Down(context.Background(), dir, &log); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(setting); err != nil || string(b) != "0\n" {
		t.Errorf("setting after down: %q %v, want the value before up", b, err)
	}
	if !strings.Contains(log.String(), "==> restoring "+setting+" = 0") {
		t.Errorf("down's log lacks the restore:\n%s", log.String())
	}
}
