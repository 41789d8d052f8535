package iptables

import (
	"errors"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTxRender(t *testing.T) {
	tx := NewTx(Filter).
		DeclareChain("c1").
		Append("FORWARD", "-j c1").
		Append("c1", "-s 10.0.0.1/32 -j ACCEPT", "-j REJECT --reject-with icmp-port-unreachable").
		Insert("c1", 1, "-p tcp -j DROP", "-p udp -j DROP").
		InsertInOrder("c1", 2, "-p icmp -j DROP", "-p sctp -j DROP").
		Delete("FORWARD", "-j old").
		DeleteNum("c1", 3).
		Replace("c1", 1, "-j ACCEPT").
		Flush("old").
		DeleteChain("old")
	want := `*filter
:c1 - [0:0]
-A FORWARD -j c1
-A c1 -s 10.0.0.1/32 -j ACCEPT
-A c1 -j REJECT --reject-with icmp-port-unreachable
-I c1 1 -p tcp -j DROP
-I c1 1 -p udp -j DROP
-I c1 2 -p icmp -j DROP
-I c1 3 -p sctp -j DROP
-D FORWARD -j old
-D c1 3
-R c1 1 -j ACCEPT
-F old
-X old
COMMIT
`
	if diff := cmp.Diff(want, tx.String()); diff != "" {
		t.Errorf("render (-want +got):\n%s", diff)
	}
	if tx.Table() != Filter || tx.Empty() || len(tx.Lines()) != 13 {
		t.Errorf("table %q empty %v lines %d", tx.Table(), tx.Empty(), len(tx.Lines()))
	}
}

func TestRenderSkipsEmptyAndJoinsTables(t *testing.T) {
	f := NewTx(Filter).Append("INPUT", "-j ACCEPT")
	n := NewTx(NAT)
	m := NewTx(Mangle).Flush("x")
	got := Render(f, nil, n, m)
	want := "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n*mangle\n-F x\nCOMMIT\n"
	if got != want {
		t.Errorf("got %q want %q", got, want)
	}
	if Render(n, nil) != "" {
		t.Error("empty transactions rendered")
	}
}

func TestRuleTarget(t *testing.T) {
	for _, tc := range []struct {
		rule   Rule
		target string
		isGoto bool
	}{
		{"-s 10.0.0.1/32 -j input--abc", "input--abc", false},
		{"-m iprange --dst-range 1.1.1.1-1.1.1.2 -g netout--x--log", "netout--x--log", true},
		{"--jump ACCEPT", "ACCEPT", false},
		{"-p tcp -m tcp --dport 80", "", false},
		{"", "", false},
	} {
		target, isGoto := tc.rule.Target()
		if target != tc.target || isGoto != tc.isGoto {
			t.Errorf("%q: got %q,%v want %q,%v", tc.rule, target, isGoto, tc.target, tc.isGoto)
		}
	}
}

func TestParseFlavorAndBinaries(t *testing.T) {
	for in, want := range map[string][3]string{
		"":        {"iptables", "iptables-restore", "iptables-save"},
		"default": {"iptables", "iptables-restore", "iptables-save"},
		"nft":     {"iptables-nft", "iptables-nft-restore", "iptables-nft-save"},
		"legacy":  {"iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save"},
	} {
		f, err := ParseFlavor(in)
		if err != nil {
			t.Fatal(err)
		}
		a, b, c := New(Config{Flavor: f, LockFile: t.TempDir() + "/l"}).Binaries()
		if got := [3]string{a, b, c}; got != want {
			t.Errorf("%q: got %v want %v", in, got, want)
		}
	}
	for f, want := range map[Flavor][3]string{
		FlavorDefault: {"ip6tables", "ip6tables-restore", "ip6tables-save"},
		FlavorNFT:     {"ip6tables-nft", "ip6tables-nft-restore", "ip6tables-nft-save"},
		FlavorLegacy:  {"ip6tables-legacy", "ip6tables-legacy-restore", "ip6tables-legacy-save"},
	} {
		d := New(Config{Flavor: f, Family: IPv6, LockFile: t.TempDir() + "/l"})
		a, b, c := d.Binaries()
		if got := [3]string{a, b, c}; got != want || d.Family() != IPv6 {
			t.Errorf("ipv6 %q: got %v %s want %v", f, got, d.Family(), want)
		}
	}
	if _, err := ParseFlavor("nftables"); err == nil {
		t.Error("unknown flavor accepted")
	}
	a, b, c := New(Config{IPTables: "/x/ipt", Restore: "/x/r", Save: "/x/s"}).Binaries()
	if a != "/x/ipt" || b != "/x/r" || c != "/x/s" {
		t.Errorf("overrides ignored: %s %s %s", a, b, c)
	}
}

func TestRestoreErrorNamesTheLine(t *testing.T) {
	payload := "*filter\n:a1 - [0:0]\n-A a1 -m foo -j ACCEPT\n-X a2\nCOMMIT\n"
	exitErr := &exec.ExitError{}
	for _, tc := range []struct {
		name, output string
		line         int
		text         string
	}{
		{"parse error (both backends)", "iptables-restore v1.8.9 (legacy): Couldn't load match `foo':No such file or directory\n\nError occurred at line: 3\nTry `iptables-restore -h' for more information.\n", 3, "-A a1 -m foo -j ACCEPT"},
		{"legacy commit", "iptables-restore: line 4 failed\n", 4, "-X a2"},
		{"nft commit", "iptables-restore v1.8.9 (nf_tables): \nline 4: CHAIN_DEL failed (Device or resource busy): chain a2\n", 4, "-X a2"},
		{"nft deferred", "iptables-restore v1.8.9 (nf_tables): Chain 'a2' does not exist\nError occurred at line: 5\n", 5, "COMMIT"},
		{"no line", "iptables-restore: unable to initialize table 'filter'\n", 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := newRestoreError("iptables-restore", payload, tc.output, exitErr)
			if err.Line != tc.line || err.Text != tc.text {
				t.Errorf("line %d %q, want %d %q", err.Line, err.Text, tc.line, tc.text)
			}
			msg := err.Error()
			if tc.text != "" && !strings.Contains(msg, `"`+tc.text+`"`) {
				t.Errorf("message %q does not quote the failing line", msg)
			}
			if !strings.Contains(msg, strings.TrimSpace(strings.Split(tc.output, "\n")[0])) {
				t.Errorf("message %q lacks the output", msg)
			}
			var re *RestoreError
			if !errors.As(error(err), &re) || !errors.Is(err, exitErr) {
				t.Error("error does not unwrap")
			}
		})
	}
}

func TestUnknownTableRejected(t *testing.T) {
	d := New(Config{LockFile: t.TempDir() + "/lock"})
	if err := d.Apply(t.Context(), NewTx("filter\n-F").Flush("x")); err == nil {
		t.Error("bad table name accepted")
	}
	if _, err := d.Save(t.Context(), "bogus"); err == nil {
		t.Error("bad table name accepted")
	}
}
