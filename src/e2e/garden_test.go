package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/netman-release/netman/src/testsupport/celltest"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// TestGardenExternalNetworker drives a container's network the way Garden
// does: garden-external-networker up and down, through libcni, the
// cni-wrapper-plugin and silk-cni, with an allocated port mapping, an
// egress rule and app properties.
func TestGardenExternalNetworker(t *testing.T) {
	lab := celltest.New(t, celltest.Options{Cells: 2})
	c1, c2 := lab.Cells[0], lab.Cells[1]
	extNS, extIP := lab.NewHost(200)
	celltest.Listen(t, extNS, "tcp", extIP+":9000")
	celltest.Listen(t, extNS, "tcp", extIP+":9001")

	// The container: a process in a namespace of its own, as Garden's
	// init process would be.
	ctr := netnstest.New(t, "gk")
	pid := ctr.Start(t, "sleep", "300")

	handle := netnstest.UniqueName("garden-")
	props := map[string]string{
		"app_id": "app-guid", "space_id": "space-guid", "org_id": "org-guid", "policy_group_id": "app-guid",
		"ports": "8080", "container_workload": "app",
	}
	netout := []map[string]any{{
		"protocol": 1, "networks": []map[string]string{{"start": extIP, "end": extIP}},
		"ports": []map[string]int{{"start": 9000, "end": 9000}},
	}}
	res, err := c1.GardenUp(t, handle, pid, props, []celltest.PortMapping{{HostPort: 0, ContainerPort: 8080}}, netout)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("up prints the container's network", func(t *testing.T) {
		lease := netip.MustParsePrefix(c1.OverlaySubnet())
		ip, err := netip.ParseAddr(res.ContainerIP)
		if err != nil || !lease.Contains(ip) {
			t.Errorf("container IP %q is not in the cell's lease %s", res.ContainerIP, lease)
		}
		// The cell has no DNS servers or search domains: both are left out.
		if res.HostIP != "255.255.255.255" || res.Interface != "eth0" || res.DNSServers != nil || res.SearchDomains != nil {
			t.Errorf("up printed %s", res.Stdout)
		}
		if want := []celltest.PortMapping{{HostPort: 61000, ContainerPort: 8080}}; !cmp.Equal(res.MappedPorts, want) {
			t.Errorf("mapped ports %v, want %v", res.MappedPorts, want)
		}
		if out := ctr.Run(t, "ip", "-4", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, " inet "+res.ContainerIP+" ") {
			t.Errorf("container eth0: %s", out)
		}
		if !sameFile(c1.GardenBindMount(handle), fmt.Sprintf("/proc/%d/ns/net", pid)) {
			t.Error("the bind mount is not the container's namespace")
		}
		if got := portState(t, c1); got != fmt.Sprintf(`{"acquired_ports":{%q:[61000]}}`, handle) {
			t.Errorf("port state %s", got)
		}
	})

	t.Run("the mapped port reaches the container from another cell", func(t *testing.T) {
		celltest.Listen(t, ctr, "tcp", res.ContainerIP+":8080")
		eventually(t, 10*time.Second, func() error {
			return celltest.Echo(c2.NS, "tcp", c1.UnderlayIP+":61000", "via garden port mapping")
		})
	})

	t.Run("netout rules from Garden are installed", func(t *testing.T) {
		eventually(t, 5*time.Second, func() error { return celltest.Echo(ctr, "tcp", extIP+":9000", "out") })
		if err := celltest.Echo(ctr, "tcp", extIP+":9001", "out"); err == nil {
			t.Error("egress to a port no rule allows got through")
		}
	})

	t.Run("the metadata store has the properties", func(t *testing.T) {
		entry, ok := metadataStore(t, c1)[handle]
		if !ok {
			t.Fatalf("no store entry for %s", handle)
		}
		want := map[string]any{}
		for k, v := range props {
			want[k] = v
		}
		if entry.IP != res.ContainerIP || !cmp.Equal(entry.Metadata, want) {
			t.Errorf("store entry %+v", entry)
		}
	})

	t.Run("down removes everything, twice", func(t *testing.T) {
		for i := range 2 {
			if err := c1.GardenDown(t, handle); err != nil {
				t.Fatalf("down %d: %v", i, err)
			}
		}
		if _, err := os.Lstat(c1.GardenBindMount(handle)); !os.IsNotExist(err) {
			t.Errorf("bind mount left: %v", err)
		}
		if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), handle) {
			t.Error("the namespace is still mounted")
		}
		if got := portState(t, c1); got != `{"acquired_ports":{}}` {
			t.Errorf("port state %s", got)
		}
		if _, ok := metadataStore(t, c1)[handle]; ok {
			t.Error("store entry left")
		}
		for _, table := range []string{"filter", "nat", "mangle"} {
			if save := c1.IptablesSave(t, table); strings.Contains(save, handle) || strings.Contains(save, res.ContainerIP) {
				t.Errorf("%s still has the container's rules:\n%s", table, save)
			}
		}
		if out, _ := ctr.Command("ip", "link", "show", "eth0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
			t.Errorf("container eth0 left: %s", out)
		}
	})
}

func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}

// portState is the cell's port state file without its final newline.
func portState(t *testing.T, c *celltest.Cell) string {
	t.Helper()
	b, err := os.ReadFile(c.GardenConfig().StateFilePath)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

type storeEntry struct {
	IP       string         `json:"ip"`
	Metadata map[string]any `json:"metadata"`
}

// metadataStore reads the cell's container metadata store.
func metadataStore(t *testing.T, c *celltest.Cell) map[string]storeEntry {
	t.Helper()
	b, err := os.ReadFile(c.WrapperConfig().Datastore)
	if err != nil {
		t.Fatal(err)
	}
	var store map[string]storeEntry
	if err := json.Unmarshal(b, &store); err != nil {
		t.Fatal(err)
	}
	return store
}
