package gardennet

import (
	"context"
	"testing"

	"github.com/netman-release/netman/src/iptables"
)

func TestProxyRedirectTx(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cidr    string
		ingress bool
		want    string
		err     string
	}{
		{name: "off"},
		{name: "egress", cidr: "127.128.0.0/9", want: "*nat\n-A OUTPUT -d 127.128.0.0/9 -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"},
		{name: "egress, unmasked CIDR printed as iptables prints it", cidr: "10.255.3.4/16", want: "*nat\n-A OUTPUT -d 10.255.0.0/16 -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"},
		{name: "egress to one address", cidr: "10.0.0.1", want: "*nat\n-A OUTPUT -d 10.0.0.1/32 -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"},
		{name: "ingress only", ingress: true, want: "*nat\n-A PREROUTING -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"},
		{name: "both", cidr: "127.128.0.0/9", ingress: true,
			want: "*nat\n-A OUTPUT -d 127.128.0.0/9 -p tcp -j REDIRECT --to-ports 15001\n-A PREROUTING -p tcp -j REDIRECT --to-ports 15001\nCOMMIT\n"},
		{name: "bad CIDR", cidr: "nope/9", err: `invalid proxy_redirect_cidr "nope/9"`},
		{name: "IPv6", cidr: "fd00::/8", err: `invalid proxy_redirect_cidr "fd00::/8"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx, err := ProxyRedirectTx(tc.cidr, 15001, tc.ingress)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("got %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if tx != nil {
				got = tx.String()
			}
			if got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// restoreLog records restore payloads (iptablestest does not know the
// REDIRECT target).
type restoreLog struct{ payloads []string }

func (r *restoreLog) Apply(_ context.Context, txs ...*iptables.Tx) error {
	r.payloads = append(r.payloads, iptables.Render(txs...))
	return nil
}

func TestProxyRedirectApply(t *testing.T) {
	tables := &restoreLog{}
	var entered []string
	r := &ProxyRedirect{IPTables: tables, CIDR: "10.255.0.0/16", ProxyPort: 9999, Ingress: true,
		Enter: func(nsPath string, fn func() error) error { entered = append(entered, nsPath); return fn() }}
	if err := r.Apply(context.Background(), "/netns/h"); err != nil {
		t.Fatal(err)
	}
	// One restore with both rules.
	want := "*nat\n-A OUTPUT -d 10.255.0.0/16 -p tcp -j REDIRECT --to-ports 9999\n-A PREROUTING -p tcp -j REDIRECT --to-ports 9999\nCOMMIT\n"
	if len(tables.payloads) != 1 || tables.payloads[0] != want {
		t.Errorf("restores %q, want one %q", tables.payloads, want)
	}
	if len(entered) != 1 || entered[0] != "/netns/h" {
		t.Errorf("entered %v", entered)
	}

	// Off: the namespace is not even entered.
	entered = nil
	r = &ProxyRedirect{IPTables: tables, ProxyPort: 9999, Enter: r.Enter}
	if err := r.Apply(context.Background(), "/netns/h"); err != nil || entered != nil {
		t.Errorf("off: %v %v", err, entered)
	}
	// A namespace that is not there fails.
	r = &ProxyRedirect{IPTables: tables, CIDR: "10.0.0.0/8", ProxyPort: 9999}
	if err := r.Apply(context.Background(), "/nonexistent/netns"); err == nil {
		t.Error("entered a namespace that does not exist")
	}
}
