package celltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// SilkCNI runs silk-cni itself in the cell, with the delegate config the
// wrapper would pass it, and returns its stdout: the silk data path alone,
// with none of the wrapper's enforcement in the way.
func (c *Cell) SilkCNI(command, containerID, netnsPath string) (string, error) {
	conf := c.WrapperConfig().Delegate
	conf["cniVersion"], conf["name"] = "1.0.0", "silk"
	stdin, err := json.Marshal(conf)
	if err != nil {
		return "", err
	}
	cmd := c.NS.Command(filepath.Join(c.lab.Bins, "silk-cni"))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH="+c.lab.Bins)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("silk-cni %s: %v: stdout %s stderr %s", command, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// AddSilkContainer is AddContainer through silk-cni alone (SilkCNI): a
// container with its addresses, routes and neighbours and no policy
// enforcement, for tests of the overlay itself.
func (c *Cell) AddSilkContainer(t testing.TB) *Container {
	t.Helper()
	ns := netnstest.New(t, "k")
	id := netnstest.UniqueName("ctr-")
	out, err := c.SilkCNI("ADD", id, ns.Path)
	if err != nil {
		t.Fatal(err)
	}
	var result struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &result); err != nil || len(result.IPs) == 0 {
		t.Fatalf("ADD result %q: %v", out, err)
	}
	ctr := &Container{Cell: c, ID: id, NS: ns}
	for _, r := range result.IPs {
		ip, _, err := net.ParseCIDR(r.Address)
		switch {
		case err != nil:
			t.Fatalf("ADD result address %q: %v", r.Address, err)
		case ip.To4() != nil:
			ctr.IP = ip.String()
		default:
			ctr.IP6 = ip.String()
		}
	}
	t.Cleanup(func() {
		if !ctr.deleted {
			if _, err := c.SilkCNI("DEL", id, ns.Path); err != nil {
				t.Errorf("cleanup DEL: %v", err)
			}
		}
	})
	return ctr
}
