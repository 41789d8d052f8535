package cni

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func serverPort(t *testing.T, srv *httptest.Server) int {
	t.Helper()
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	return p
}

func TestDiscover(t *testing.T) {
	const port = -1 // replaced by each case's own fake daemon

	subnetFile := filepath.Join(t.TempDir(), "subnet.env")
	if err := os.WriteFile(subnetFile, []byte("FLANNEL_NETWORK=10.255.0.0/16\nFLANNEL_SUBNET=10.255.17.0/24\nFLANNEL_MTU=1410\nFLANNEL_IPMASQ=false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(t.TempDir(), "bad.env")
	if err := os.WriteFile(badFile, []byte("FLANNEL_MTU=1410\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		conf    NetConf
		status  int
		body    string
		delay   time.Duration
		want    NetworkInfo
		wantErr string
	}{
		{name: "daemon", conf: NetConf{DaemonPort: port}, status: 200,
			body: `{"overlay_subnet":"10.255.17.0/24","mtu":1450}`, want: NetworkInfo{OverlaySubnet: "10.255.17.0/24", MTU: 1450}},
		{name: "mtu override", conf: NetConf{DaemonPort: port, MTU: 1350}, status: 200,
			body: `{"overlay_subnet":"10.255.17.0/24","mtu":1450}`, want: NetworkInfo{OverlaySubnet: "10.255.17.0/24", MTU: 1350}},
		{name: "dual-stack daemon", conf: NetConf{DaemonPort: port}, status: 200,
			body: `{"overlay_subnet":"10.255.17.0/24","mtu":1450,"ipv6_overlay_network":"fd73:696c:6b::/96"}`,
			want: NetworkInfo{OverlaySubnet: "10.255.17.0/24", MTU: 1450, IPv6OverlayNetwork: "fd73:696c:6b::/96"}},
		{name: "bad ipv6 overlay network", conf: NetConf{DaemonPort: port}, status: 200,
			body:    `{"overlay_subnet":"10.255.17.0/24","mtu":1450,"ipv6_overlay_network":"fd00::/64"}`,
			wantErr: "ipv6_overlay_network: invalid ipv6 overlay network"},
		{name: "daemon error", conf: NetConf{DaemonPort: port}, status: 500, body: "boom", wantErr: "answered 500: boom"},
		{name: "bad json", conf: NetConf{DaemonPort: port}, status: 200, body: "{", wantErr: "decoding silk-daemon response"},
		{name: "bad subnet", conf: NetConf{DaemonPort: port}, status: 200,
			body: `{"overlay_subnet":"nope","mtu":1450}`, wantErr: `invalid overlay subnet "nope"`},
		{name: "ipv6 subnet", conf: NetConf{DaemonPort: port}, status: 200,
			body: `{"overlay_subnet":"fd00::/64","mtu":1450}`, wantErr: "must be an IPv4 CIDR"},
		{name: "no mtu", conf: NetConf{DaemonPort: port}, status: 200,
			body: `{"overlay_subnet":"10.255.17.0/24"}`, wantErr: "invalid mtu 0"},
		{name: "slow daemon", conf: NetConf{DaemonPort: port}, status: 200, delay: 300 * time.Millisecond,
			body: `{"overlay_subnet":"10.255.17.0/24","mtu":1450}`, wantErr: "deadline exceeded"},
		{name: "subnet file", conf: NetConf{SubnetFile: subnetFile}, want: NetworkInfo{OverlaySubnet: "10.255.17.0/24", MTU: 1410}},
		{name: "subnet file override", conf: NetConf{SubnetFile: subnetFile, MTU: 1300}, want: NetworkInfo{OverlaySubnet: "10.255.17.0/24", MTU: 1300}},
		{name: "bad subnet file", conf: NetConf{SubnetFile: badFile}, wantErr: "unable to parse flannel subnet file"},
		{name: "missing subnet file", conf: NetConf{SubnetFile: badFile + ".missing"}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.conf.DaemonPort == port {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					time.Sleep(tt.delay)
					w.WriteHeader(tt.status)
					_, _ = w.Write([]byte(tt.body))
				}))
				t.Cleanup(srv.Close)
				tt.conf.DaemonPort = serverPort(t, srv)
			}
			p := &Plugin{DaemonTimeout: 100 * time.Millisecond}
			got, err := p.discover(context.Background(), &tt.conf)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestDiscoverDaemonDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	port := serverPort(t, srv)
	srv.Close()
	_, err := (&Plugin{}).discover(context.Background(), &NetConf{DaemonPort: port})
	want := "silk-daemon not reachable at http://127.0.0.1:" + strconv.Itoa(port) + "/ (is it running?)"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("err = %v", err)
	}
}
