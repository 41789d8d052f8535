package bootstrap_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"code.cloudfoundry.org/lager/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/iptables"
	"github.com/netman-release/netman/src/silk/bootstrap"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	full := bootstrap.Config{
		PolicyServerURL: "https://policy-server.service.cf.internal:4003", PolicyServerCACertFile: "/c/ca.crt",
		PolicyClientCertFile: "/c/client.crt", PolicyClientKeyFile: "/c/client.key",
		IPTablesLockFile: "/var/vcap/data/garden-cni/iptables.lock", SingleIPOnly: true,
	}
	tests := []struct {
		name    string
		path    string
		want    bootstrap.Config
		wantErr string
	}{
		{"missing", filepath.Join(dir, "nope.json"), bootstrap.Config{}, "file does not exist: open " + filepath.Join(dir, "nope.json") + ": no such file or directory"},
		{"not JSON", write("bad.json", "{"), bootstrap.Config{}, "parsing config: unexpected end of JSON input"},
		{"upstream's rendering", write("ok.json", `{
  "policy_server_url": "https://policy-server.service.cf.internal:4003",
  "policy_server_ca_cert_file": "/c/ca.crt",
  "policy_client_cert_file": "/c/client.crt",
  "policy_client_key_file": "/c/client.key",
  "iptables_lock_file": "/var/vcap/data/garden-cni/iptables.lock",
  "single_ip_only": true
}`), full, ""},
		{"not single IP: nothing else needed", write("off.json", `{"single_ip_only": false}`), bootstrap.Config{}, ""},
		{"single IP without the policy server", write("empty.json", `{"single_ip_only": true, "iptables_lock_file": "/l"}`),
			bootstrap.Config{SingleIPOnly: true, IPTablesLockFile: "/l"},
			"invalid config: policy_server_url must not be empty\ninvalid config: policy_server_ca_cert_file must not be empty\n" +
				"invalid config: policy_client_cert_file must not be empty\ninvalid config: policy_client_key_file must not be empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := bootstrap.LoadConfig(tc.path)
			if (err == nil) != (tc.wantErr == "") || (err != nil && err.Error() != tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
		})
	}
}

const (
	mark9  = "-o silk-vtep -j MARK --set-xmark 0x9/0xffffffff"
	accept = "-o silk-vtep -j ACCEPT"
)

func state(t *testing.T, save string) *iptables.State {
	t.Helper()
	s, err := iptables.ParseSave(iptables.Filter, save)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPlans(t *testing.T) {
	empty := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A OUTPUT -o eth0 -j ACCEPT\nCOMMIT\n"
	installed := "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:istio-ingress - [0:0]\n" +
		"-A OUTPUT -j istio-ingress\n-A OUTPUT -o eth0 -j ACCEPT\n-A istio-ingress " + mark9 + "\n-A istio-ingress " + accept + "\nCOMMIT\n"
	stale := strings.Replace(installed, "0x9/", "0x3/", 1)
	tests := []struct {
		name        string
		save        string
		tag         string
		install     []string
		remove      []string
		installFail string
	}{
		{
			name: "fresh VM",
			save: empty, tag: "0009",
			install: []string{":istio-ingress - [0:0]", "-A istio-ingress " + mark9, "-A istio-ingress " + accept, "-I OUTPUT 1 -j istio-ingress"},
			remove:  nil,
		},
		{
			name: "already installed (a rerun of pre-start)",
			save: installed, tag: "0009",
			install: nil,
			remove:  []string{"-D OUTPUT -j istio-ingress", "-F istio-ingress", "-X istio-ingress"},
		},
		{
			name: "the tag changed",
			save: stale, tag: "9",
			install: []string{"-D istio-ingress 1", "-I istio-ingress 1 " + mark9},
			remove:  []string{"-D OUTPUT -j istio-ingress", "-F istio-ingress", "-X istio-ingress"},
		},
		{name: "a tag that is not hex", save: empty, tag: "zz", installFail: `invalid tag "zz" from the policy server: want hex digits`},
		{name: "no tag", save: empty, tag: "", installFail: `invalid tag "" from the policy server: want hex digits`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cur := state(t, tc.save)
			tx, err := bootstrap.PlanInstall(cur, tc.tag)
			if tc.installFail != "" {
				if err == nil || err.Error() != tc.installFail {
					t.Fatalf("err = %v, want %q", err, tc.installFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.install, tx.Lines()); diff != "" {
				t.Errorf("install (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.remove, bootstrap.PlanRemove(cur).Lines()); diff != "" {
				t.Errorf("remove (-want +got):\n%s", diff)
			}
		})
	}
}

// fakeTable applies plans to an in-memory iptables-save text, as the
// driver would (only the lines the bootstrap plans are understood).
type fakeTable struct {
	save  string
	tx    []string
	calls int
}

func (f *fakeTable) Update(_ context.Context, table string, plan iptables.PlanFunc) (*iptables.State, error) {
	f.calls++
	cur, err := iptables.ParseSave(table, f.save)
	if err != nil {
		return nil, err
	}
	tx, err := plan(cur)
	if err != nil {
		return cur, err
	}
	f.tx = append(f.tx, tx.Lines()...)
	return cur, nil
}

type fakeTagger struct {
	tag   string
	err   error
	asked []string
}

func (f *fakeTagger) CreateOrGetTag(_ context.Context, id, groupType string) (string, error) {
	f.asked = append(f.asked, id+"/"+groupType)
	return f.tag, f.err
}

func TestRun(t *testing.T) {
	logger := lager.NewLogger("test")
	ctx := t.Context()

	// Not single-IP: neither the policy server nor iptables is touched.
	tg, tbl := &fakeTagger{tag: "0009"}, &fakeTable{save: ""}
	if err := bootstrap.Run(ctx, logger, bootstrap.Config{}, tg, tbl); err != nil || len(tg.asked) != 0 || tbl.calls != 0 {
		t.Errorf("not single-IP: %v, asked %v, %d iptables calls", err, tg.asked, tbl.calls)
	}

	cfg := bootstrap.Config{SingleIPOnly: true}
	tg, tbl = &fakeTagger{tag: "0009"}, &fakeTable{save: "*filter\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"}
	if err := bootstrap.Run(ctx, logger, cfg, tg, tbl); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"INGRESS_ROUTER/router"}, tg.asked); diff != "" {
		t.Errorf("asked (-want +got):\n%s", diff)
	}
	if len(tbl.tx) != 4 {
		t.Errorf("planned %q", tbl.tx)
	}

	// The policy server fails: nothing is written.
	tg, tbl = &fakeTagger{err: errors.New("http status 500: boom")}, &fakeTable{}
	err := bootstrap.Run(ctx, logger, cfg, tg, tbl)
	if err == nil || err.Error() != "get router tag from policy server: http status 500: boom" || tbl.calls != 0 {
		t.Errorf("policy server down: %v, %d iptables calls", err, tbl.calls)
	}
}

// TestExampleConfig keeps config/silk-daemon-bootstrap.json loadable.
func TestExampleConfig(t *testing.T) {
	cfg, err := bootstrap.LoadConfig(filepath.Join("..", "..", "..", "config", "silk-daemon-bootstrap.json"))
	if err != nil || !cfg.SingleIPOnly || cfg.PolicyServerURL != "https://policy-server.service.cf.internal:4003" {
		t.Errorf("example config: %+v %v", cfg, err)
	}
}
