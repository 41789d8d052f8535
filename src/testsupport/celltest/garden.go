package celltest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/netman-release/netman/src/gardennet"
	"github.com/netman-release/netman/src/lab"
)

// GardenResult is what garden-external-networker printed for `up`.
type GardenResult struct {
	ContainerIP   string        // garden.network.container-ip
	HostIP        string        // garden.network.host-ip
	MappedPorts   []PortMapping // garden.network.mapped-ports, parsed
	Interface     string        // garden.network.interface
	DNSServers    []string
	SearchDomains []string
	Stdout        string // verbatim
}

// GardenConfig is the cell's adapter.json (garden-cni job) as the lab
// renders it: cni_config_dir holds one conflist, cni-wrapper-plugin
// delegating to silk-cni (WrapperConfig), and the plugins are the lab's
// binaries.
func (c *Cell) GardenConfig() gardennet.Config { return c.lab.plan.Adapter(c.plan()) }

// GardenBindMount is where up bind-mounts a container's namespace.
func (c *Cell) GardenBindMount(handle string) string {
	return filepath.Join(c.GardenConfig().BindMountDir, handle)
}

// writeGardenConfig writes the conflist and adapter.json; it returns the
// adapter.json path.
func (c *Cell) writeGardenConfig(t testing.TB) string {
	t.Helper()
	cp := c.plan()
	if err := os.MkdirAll(cp.CNIConfigDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	writeJSON(t, cp.CNIConfigDir(), lab.ConflistName, c.lab.plan.Conflist(cp))
	return writeJSON(t, cp.GardenDir(), "adapter.json", c.GardenConfig())
}

// garden runs garden-external-networker in the cell as Garden does: in the
// cell's network namespace but the test's mount namespace, so the bind
// mount outlives the process.
func (c *Cell) garden(t testing.TB, action, handle string, stdin []byte) (string, error) {
	t.Helper()
	var stderr bytes.Buffer
	out, err := lab.Garden(context.Background(), filepath.Join(c.lab.Bins, "garden-external-networker"), c.NS.NS,
		c.writeGardenConfig(t), action, handle, stdin, &stderr)
	if err == nil && stderr.Len() > 0 {
		t.Logf("garden-external-networker %s %s stderr: %s", action, handle, stderr.String())
	}
	return out, err
}

// GardenUp runs `up` for a container whose init process is pid, with
// Garden's stdin (network properties, NetIn, NetOut rules), and parses what
// it printed. A `down` for the handle runs when the test ends (repeating
// one is harmless).
func (c *Cell) GardenUp(t testing.TB, handle string, pid int, props map[string]string, netin []PortMapping, netout []map[string]any) (GardenResult, error) {
	t.Helper()
	in := map[string]any{"Pid": pid, "Properties": props}
	// Guardian leaves the lists out when empty.
	if len(netin) > 0 {
		in["netin"] = netin
	}
	if len(netout) > 0 {
		in["netout_rules"] = netout
	}
	stdin, err := json.Marshal(in)
	if err != nil {
		return GardenResult{}, err
	}
	t.Cleanup(func() {
		if err := c.GardenDown(t, handle); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	stdout, err := c.garden(t, "up", handle, stdin)
	if err != nil {
		return GardenResult{}, err
	}
	out, err := lab.ParseGardenUp(stdout)
	if err != nil {
		return GardenResult{}, err
	}
	r := GardenResult{
		ContainerIP: out.ContainerIP, HostIP: out.HostIP, Interface: out.Interface, DNSServers: out.DNSServers,
		SearchDomains: out.SearchDomains, Stdout: stdout, MappedPorts: []PortMapping{},
	}
	for _, m := range out.MappedPorts {
		r.MappedPorts = append(r.MappedPorts, PortMapping{HostPort: m.HostPort, ContainerPort: m.ContainerPort})
	}
	return r, nil
}

// GardenDown runs `down` for handle (Garden sends null on stdin).
func (c *Cell) GardenDown(t testing.TB, handle string) error {
	t.Helper()
	_, err := c.garden(t, "down", handle, []byte("null"))
	return err
}
