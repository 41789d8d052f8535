// Command fakedelegate stands in for silk-cni in cni-wrapper-plugin's binary
// tests: ADD returns a fixed result with the address in its config's
// "fake_ip", DEL succeeds, "fail" makes ADD fail with that message, and
// every call is appended to the file named by "record".
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

type conf struct {
	types.PluginConf
	FakeIP string `json:"fake_ip"`
	Record string `json:"record"`
	Fail   string `json:"fail"`
}

func load(args *skel.CmdArgs) (*conf, error) {
	c := &conf{}
	if err := json.Unmarshal(args.StdinData, c); err != nil {
		return nil, err
	}
	return c, nil
}

func record(c *conf, verb string, args *skel.CmdArgs) {
	if c.Record == "" {
		return
	}
	f, err := os.OpenFile(c.Record, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s %s\n", verb, args.ContainerID, c.CNIVersion)
}

func main() {
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add: func(args *skel.CmdArgs) error {
			c, err := load(args)
			if err != nil {
				return err
			}
			record(c, "ADD", args)
			if c.Fail != "" {
				return errors.New(c.Fail)
			}
			ip, ipn, err := net.ParseCIDR(c.FakeIP)
			if err != nil {
				return err
			}
			ipn.IP = ip
			gw := net.ParseIP("169.254.0.1")
			r := &types100.Result{
				CNIVersion: c.CNIVersion,
				Interfaces: []*types100.Interface{{Name: args.IfName, Sandbox: args.Netns}},
				IPs:        []*types100.IPConfig{{Address: *ipn, Gateway: gw, Interface: types100.Int(0)}},
			}
			return types.PrintResult(r, c.CNIVersion)
		},
		Del: func(args *skel.CmdArgs) error {
			c, err := load(args)
			if err != nil {
				return err
			}
			record(c, "DEL", args)
			return nil
		},
	}, version.All, "fake delegate")
}
