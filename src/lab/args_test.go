package lab

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseUpArgs(t *testing.T) {
	defaults := Options{Dir: ".lab", Bins: "bin", Cells: 2, Apps: 2, DB: DBSQLite, Backend: BackendIPTables, Underlay: "10.244.0."}
	with := func(f func(*UpArgs)) UpArgs {
		a := UpArgs{Options: defaults}
		f(&a)
		return a
	}
	for _, tc := range []struct {
		name string
		args []string
		want UpArgs
		err  string
	}{
		{name: "none: the defaults", want: with(func(*UpArgs) {})},
		{name: "every option, both forms", args: []string{"--cells", "4", "--apps=5", "-db", "mysql", "--keep", "--dir=/tmp/l", "--bin", "/tmp/b", "--underlay", "10.9.8.", "--backend", "nftables"},
			want: with(func(a *UpArgs) {
				a.Cells, a.Apps, a.DB, a.Keep, a.Dir, a.Bins, a.Underlay, a.Backend = 4, 5, DBMySQL, true, "/tmp/l", "/tmp/b", "10.9.8.", BackendNFTables
			})},
		{name: "nftables, inline", args: []string{"--backend=nftables"}, want: with(func(a *UpArgs) { a.Backend = BackendNFTables })},
		{name: "iptables, the default spelled out", args: []string{"--backend", "iptables"}, want: with(func(*UpArgs) {})},
		{name: "the limits", args: []string{"--cells", "1", "--apps", "200"}, want: with(func(a *UpArgs) { a.Cells, a.Apps = 1, 200 })},
		{name: "help", args: []string{"-h"}, want: with(func(a *UpArgs) { a.Help = true })},
		{name: "dual stack", args: []string{"--ipv6", "--cells", "3"}, want: with(func(a *UpArgs) { a.IPv6, a.Cells = true, 3 })},
		{name: "ipv6 with a value", args: []string{"--ipv6=yes"}, err: "--ipv6 takes no value"},
		{name: "no cells", args: []string{"--cells", "0"}, err: "--cells 0: want a number from 1 to 200"},
		{name: "one app", args: []string{"--apps=1"}, err: "--apps 1: want a number from 2 to 200"},
		{name: "too many cells", args: []string{"--cells", "201"}, err: "--cells 201: want a number from 1 to 200"},
		{name: "not a number", args: []string{"--cells", "abc"}, err: "--cells abc: want a number from 1 to 200"},
		{name: "a sign", args: []string{"--apps", "+3"}, err: "--apps +3: want a number from 2 to 200"},
		{name: "a negative", args: []string{"--cells", "-1"}, err: "--cells -1: want a number from 1 to 200"},
		{name: "missing count", args: []string{"--cells", "3", "--apps"}, err: "--apps needs a number from 2 to 200"},
		{name: "empty count", args: []string{"--cells="}, err: "--cells needs a number from 1 to 200"},
		{name: "unknown db", args: []string{"--db", "oracle"}, err: "--db oracle: want sqlite, postgres or mysql"},
		{name: "missing db", args: []string{"--db"}, err: "--db needs sqlite, postgres or mysql"},
		{name: "unknown backend", args: []string{"--backend", "ebpf"}, err: "--backend ebpf: want iptables or nftables"},
		{name: "backend in capitals", args: []string{"--backend=NFTables"}, err: "--backend NFTables: want iptables or nftables"},
		{name: "missing backend", args: []string{"--cells", "2", "--backend"}, err: "--backend needs iptables or nftables"},
		{name: "empty backend", args: []string{"--backend="}, err: "--backend needs iptables or nftables"},
		{name: "bad underlay", args: []string{"--underlay", "10.1.2.3"}, err: "--underlay 10.1.2.3: want the first three octets of a /24 and a dot (10.244.0.)"},
		{name: "unknown option", args: []string{"--nodes", "3"}, err: "unknown option --nodes"},
		{name: "stray argument", args: []string{"3"}, err: `unexpected argument "3"`},
		{name: "keep with a value", args: []string{"--keep=yes"}, err: "--keep takes no value"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseUpArgs(tc.args)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreFields(Options{}, "Log")); diff != "" {
				t.Errorf("-want +got:\n%s", diff)
			}
		})
	}
}
