// Command fakeplugin stands in for the CNI chain in garden-external-networker's
// binary tests. Every call is appended as one JSON line ({"env": CNI_*
// variables, "stdin": config}) to the file named by its config's "record".
// ADD passes a prevResult on (a chained plugin), or else returns the
// address in "fake_ip" on CNI_IFNAME with "dns" as nameservers; "fail"
// makes ADD fail with that message.
package main

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type conf struct {
	types.PluginConf
	FakeIP string   `json:"fake_ip"`
	DNS    []string `json:"fake_dns"`
	Record string   `json:"record"`
	Fail   string   `json:"fail"`
}

func record(c *conf, stdin []byte) error {
	if c.Record == "" {
		return nil
	}
	env := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "CNI_") {
			env[k] = v
		}
	}
	line, err := json.Marshal(map[string]any{"env": env, "stdin": json.RawMessage(stdin)})
	if err != nil {
		return err
	}
	f, err := os.OpenFile(c.Record, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.Write(append(line, '\n'))
	return err
}

func load(args *skel.CmdArgs) (*conf, error) {
	c := &conf{}
	if err := json.Unmarshal(args.StdinData, c); err != nil {
		return nil, err
	}
	return c, record(c, args.StdinData)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := load(args)
			if err != nil {
				return err
			}
			if c.Fail != "" {
				return errors.New(c.Fail)
			}
			if c.RawPrevResult != nil {
				if err := version.ParsePrevResult(&c.PluginConf); err != nil {
					return err
				}
				return types.PrintResult(c.PrevResult, c.CNIVersion)
			}
			ip, ipn, err := net.ParseCIDR(c.FakeIP)
			if err != nil {
				return err
			}
			ipn.IP = ip
			r := &types100.Result{
				CNIVersion: c.CNIVersion,
				Interfaces: []*types100.Interface{{Name: args.IfName, Sandbox: args.Netns}},
				IPs:        []*types100.IPConfig{{Address: *ipn, Interface: types100.Int(0)}},
				DNS:        types.DNS{Nameservers: c.DNS},
			}
			return types.PrintResult(r, c.CNIVersion)
		},
		Del: func(args *skel.CmdArgs) error {
			_, err := load(args)
			return err
		},
	}, version.All, "fake CNI plugin")
}
