package celltest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netman-release/netman/src/cniwrapper"
	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// Container is an app container made through the CNI chain.
type Container struct {
	Cell *Cell
	ID   string
	NS   *netnstest.NS
	IP   string
	// IP6 is the container's IPv6 address on a dual-stack cell ("" on an
	// IPv4-only one): the ADD result's second ips entry.
	IP6     string
	deleted bool
}

// PortMapping is garden's NetIn.
type PortMapping struct {
	HostPort      int `json:"host_port"`
	ContainerPort int `json:"container_port"`
}

// ContainerOptions are the runtime config Garden would pass.
type ContainerOptions struct {
	PortMappings []PortMapping
	NetOutRules  []map[string]any
	Metadata     map[string]any
}

// WrapperConfig is the cell's cni-wrapper-plugin network config, as the
// conflist renders it (spec §4.1), with every path inside the cell's dir.
func (c *Cell) WrapperConfig() cniwrapper.Config { return c.lab.plan.Wrapper(c.plan()) }

// CNI runs cni-wrapper-plugin in the cell for one container and returns
// its stdout; a non-zero exit is returned as an error carrying the output.
func (c *Cell) CNI(command, containerID, netnsPath string, opts ContainerOptions) (string, error) {
	rc := map[string]any{}
	if opts.PortMappings != nil {
		rc["portMappings"] = opts.PortMappings
	}
	if opts.NetOutRules != nil {
		rc["netOutRules"] = opts.NetOutRules
	}
	// The runtime's keys as Garden passes them, over the config's own.
	stdin, err := json.Marshal(struct {
		cniwrapper.Config
		RuntimeConfig map[string]any `json:"runtimeConfig"`
		Metadata      map[string]any `json:"metadata,omitempty"`
	}{c.WrapperConfig(), rc, opts.Metadata})
	if err != nil {
		return "", err
	}
	return c.execPlugin("cni-wrapper-plugin", command, containerID, netnsPath, stdin)
}

// execPlugin runs the plugin binary in the cell as a runtime does, with
// CNI_* variables and the config on stdin, and returns its stdout; a
// non-zero exit is returned as an error carrying the output.
func (c *Cell) execPlugin(plugin, command, containerID, netnsPath string, stdin []byte) (string, error) {
	cmd := c.NS.Command(filepath.Join(c.lab.Bins, plugin))
	cmd.Env = append(os.Environ(),
		"CNI_COMMAND="+command, "CNI_CONTAINERID="+containerID, "CNI_NETNS="+netnsPath,
		"CNI_IFNAME=eth0", "CNI_PATH="+c.lab.Bins)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v: stdout %s stderr %s", plugin, command, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// AddContainer creates a container namespace and runs CNI ADD for it.
func (c *Cell) AddContainer(t testing.TB, opts ContainerOptions) *Container {
	t.Helper()
	ns := netnstest.New(t, "k")
	id := netnstest.UniqueName("ctr-")
	out, err := c.CNI("ADD", id, ns.Path, opts)
	if err != nil {
		t.Fatal(err)
	}
	ip, ip6 := resultIPs(t, out)
	ctr := &Container{Cell: c, ID: id, NS: ns, IP: ip, IP6: ip6}
	// Runs before the namespace's own cleanup (LIFO), as Garden deletes the
	// network before the container.
	t.Cleanup(func() {
		if !ctr.deleted {
			if _, err := c.CNI("DEL", id, ns.Path, ContainerOptions{}); err != nil {
				t.Errorf("cleanup DEL: %v", err)
			}
		}
	})
	return ctr
}

// resultIPs reads an ADD result's IPv4 address and, on a dual-stack cell,
// its IPv6 address ("" otherwise).
func resultIPs(t testing.TB, out string) (ip, ip6 string) {
	t.Helper()
	var result struct {
		IPs []struct {
			Address string `json:"address"`
		} `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &result); err != nil || len(result.IPs) == 0 {
		t.Fatalf("ADD result %q: %v", out, err)
	}
	for _, r := range result.IPs {
		a, _, err := net.ParseCIDR(r.Address)
		switch {
		case err != nil:
			t.Fatalf("ADD result address %q: %v", r.Address, err)
		case a.To4() != nil && ip == "":
			ip = a.String()
		case a.To4() == nil && ip6 == "":
			ip6 = a.String()
		}
	}
	if ip == "" {
		t.Fatalf("ADD result %q has no IPv4 address", out)
	}
	return ip, ip6
}

// Delete runs CNI DEL for the container.
func (ctr *Container) Delete(t testing.TB) {
	t.Helper()
	if _, err := ctr.Cell.CNI("DEL", ctr.ID, ctr.NS.Path, ContainerOptions{}); err != nil {
		t.Fatal(err)
	}
	ctr.deleted = true
}

// AllowC2C installs what the policy agent will: packets from src get tag
// in their mark (carried across cells in the VXLAN GBP header), and dst
// accepts marked packets on proto/port. It stands in for the agent for
// tests without one: in iptables mode in a chain of its own jumped from
// FORWARD, in nftables mode as the agent's c2c chain, map and set
// (nftables.md) with one element each.
func AllowC2C(t testing.TB, src, dst *Container, tag int, proto string, port int) {
	t.Helper()
	if src.Cell.Backend() == NFTables {
		allowC2CNFT(t, src, dst, tag, proto, port)
		return
	}
	ensure := func(c *Cell) {
		if _, err := c.NS.Command("iptables", "-w", "-N", "nm-test-policy").CombinedOutput(); err == nil {
			c.NS.Run(t, "iptables", "-w", "-I", "FORWARD", "1", "-j", "nm-test-policy")
		}
	}
	ensure(src.Cell)
	ensure(dst.Cell)
	mark := fmt.Sprintf("0x%x", tag)
	dst.Cell.NS.Run(t, "iptables", "-w", "-A", "nm-test-policy", "-d", dst.IP+"/32", "-p", proto, "--dport", fmt.Sprint(port), "-m", "mark", "--mark", mark, "-j", "ACCEPT")
	src.Cell.NS.Run(t, "iptables", "-w", "-I", "nm-test-policy", "1", "-s", src.IP+"/32", "-j", "MARK", "--set-xmark", mark+"/0xffff")
}

// allowC2CNFT is AllowC2C in netman's table, as vxlan-policy-agent writes
// it: the source's tag from c2c-tags, the (tag, destination, protocol,
// port) looked up in c2c-policies.
func allowC2CNFT(t testing.TB, src, dst *Container, tag int, proto string, port int) {
	t.Helper()
	ensure := func(c *Cell) {
		if _, err := c.NS.Command("nft", "list", "map", "inet", "netman", "c2c-tags").CombinedOutput(); err == nil {
			return
		}
		cmd := c.NS.Command("nft", "-f", "-")
		cmd.Stdin = strings.NewReader(`add map inet netman c2c-tags { type ipv4_addr : mark; }
add set inet netman c2c-policies { type mark . ipv4_addr . inet_proto . inet_service; }
add rule inet netman c2c meta mark set ip saddr map @c2c-tags
add rule inet netman c2c meta mark . ip daddr . meta l4proto . th dport @c2c-policies accept
`)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("cell %d: the c2c stand-in: %v: %s", c.Index, err, out)
		}
	}
	ensure(src.Cell)
	ensure(dst.Cell)
	mark := fmt.Sprintf("0x%08x", tag)
	src.Cell.NS.Run(t, "nft", "add", "element", "inet", "netman", "c2c-tags", fmt.Sprintf("{ %s : %s }", src.IP, mark))
	dst.Cell.NS.Run(t, "nft", "add", "element", "inet", "netman", "c2c-policies", fmt.Sprintf("{ %s . %s . %s . %d }", mark, dst.IP, proto, port))
}

// Listen opens a TCP or UDP listener inside the namespace on addr; the
// socket keeps the namespace, so the returned listener works from any
// goroutine.
func Listen(t testing.TB, ns *netnstest.NS, proto, addr string) io.Closer {
	t.Helper()
	var closer io.Closer
	err := ns.Do(func() error {
		switch proto {
		case "tcp":
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			closer = l
			go echoTCP(l)
		case "udp":
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			closer = pc
			go echoUDP(pc)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("listen %s %s: %v", proto, addr, err)
	}
	t.Cleanup(func() { closer.Close() })
	return closer
}

func echoTCP(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

func echoUDP(pc net.PacketConn) {
	buf := make([]byte, 2048)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// Dial connects from inside ns to addr.
func Dial(ns *netnstest.NS, proto, addr string) (net.Conn, error) {
	var conn net.Conn
	err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout(proto, addr, 3*time.Second)
		return err
	})
	return conn, err
}

// Echo sends msg over a fresh connection from ns to addr and checks it comes back.
func Echo(ns *netnstest.NS, proto, addr, msg string) error {
	conn, err := Dial(ns, proto, addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	return EchoOn(conn, msg)
}

// EchoOn sends msg over conn and checks it comes back within 3 s.
func EchoOn(conn net.Conn, msg string) error {
	_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q came back as %q", msg, buf)
	}
	return nil
}

// IptablesSave is `iptables-save` of one table inside the cell.
func (c *Cell) IptablesSave(t testing.TB, table string) string {
	return c.NS.Run(t, "iptables-save", "-t", table)
}

// Backend is the cell's enforcement_backend.
func (c *Cell) Backend() string { return c.lab.Backend }

// NFTList is `nft list table inet netman` inside the cell: netman's whole
// table, set elements included, in nftables mode.
func (c *Cell) NFTList(t testing.TB) string {
	return c.NS.Run(t, "nft", "list", "table", "inet", "netman")
}

// EnforcedRules is what the cell's backend enforces, as text that stays
// the same while nothing changes: in iptables mode the filter table
// without counters and comments, in nftables mode netman's table.
func (c *Cell) EnforcedRules(t testing.TB) string {
	if c.Backend() == NFTables {
		return c.NFTList(t)
	}
	return StripCounters(c.IptablesSave(t, "filter"))
}

// StripCounters drops iptables-save's comment lines and its chains'
// packet and byte counters.
func StripCounters(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "#") {
			continue
		}
		if strings.HasPrefix(l, ":") {
			if i := strings.LastIndex(l, " ["); i > 0 {
				l = l[:i]
			}
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Links lists link names in the cell.
func (c *Cell) Links(t testing.TB) []string {
	out := c.NS.Run(t, "ip", "-o", "link", "show")
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}
