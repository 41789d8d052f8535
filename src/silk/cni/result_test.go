package cni

import (
	"bytes"
	"encoding/json"
	"net"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/google/go-cmp/cmp"
)

// TestResultVersions converts ADD's result to every supported version,
// prints it as the plugin would and parses it back with the CNI library's
// own types for that version.
func TestResultVersions(t *testing.T) {
	n, err := NamesFor(net.ParseIP("10.255.30.5"))
	if err != nil {
		t.Fatal(err)
	}
	res := Result(n, "eth0", "/var/run/netns/abc", nil)

	for _, v := range SupportedVersions {
		t.Run(v, func(t *testing.T) {
			conv, err := res.GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := conv.PrintTo(&buf); err != nil {
				t.Fatal(err)
			}
			var raw map[string]any
			if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
				t.Fatal(err)
			}
			if raw["cniVersion"] != v {
				t.Errorf("cniVersion %v", raw["cniVersion"])
			}
			parsed, err := version.NewResult(v, buf.Bytes())
			if err != nil {
				t.Fatalf("parsing %s result: %v\n%s", v, err, buf.String())
			}
			switch v {
			case "0.3.0", "0.3.1", "0.4.0":
				r, err := types040.GetResult(parsed)
				if err != nil {
					t.Fatal(err)
				}
				checkCommon(t, r.Interfaces[0].Name, r.Interfaces[0].Mac, r.Interfaces[0].Sandbox,
					r.Interfaces[1].Name, r.Interfaces[1].Mac, r.Interfaces[1].Sandbox, len(r.Interfaces))
				if len(r.IPs) != 1 || r.IPs[0].Version != "4" || *r.IPs[0].Interface != 1 ||
					r.IPs[0].Address.String() != "10.255.30.5/32" || !r.IPs[0].Gateway.Equal(HostIP) {
					t.Errorf("ips %+v", r.IPs)
				}
				checkRoutes(t, r.Routes)
			default:
				r, err := current.GetResult(parsed)
				if err != nil {
					t.Fatal(err)
				}
				checkCommon(t, r.Interfaces[0].Name, r.Interfaces[0].Mac, r.Interfaces[0].Sandbox,
					r.Interfaces[1].Name, r.Interfaces[1].Mac, r.Interfaces[1].Sandbox, len(r.Interfaces))
				if len(r.IPs) != 1 || *r.IPs[0].Interface != 1 ||
					r.IPs[0].Address.String() != "10.255.30.5/32" || !r.IPs[0].Gateway.Equal(HostIP) {
					t.Errorf("ips %+v", r.IPs)
				}
				checkRoutes(t, r.Routes)
				if len(r.DNS.Nameservers) != 0 {
					t.Errorf("dns %+v", r.DNS)
				}
			}
		})
	}
}

func checkCommon(t *testing.T, hostName, hostMAC, hostSandbox, ctrName, ctrMAC, ctrSandbox string, n int) {
	t.Helper()
	got := []string{hostName, hostMAC, hostSandbox, ctrName, ctrMAC, ctrSandbox}
	want := []string{"s-010255030005", "aa:aa:0a:ff:1e:05", "", "eth0", "ee:ee:0a:ff:1e:05", "/var/run/netns/abc"}
	if n != 2 {
		t.Errorf("%d interfaces", n)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("interfaces (-want +got):\n%s", diff)
	}
}

func checkRoutes(t *testing.T, routes []*types.Route) {
	t.Helper()
	if len(routes) != 1 || routes[0].Dst.String() != "0.0.0.0/0" || !routes[0].GW.Equal(HostIP) {
		t.Errorf("routes %+v", routes)
	}
}
