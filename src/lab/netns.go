package lab

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

// Run runs a command in this namespace; a failure carries its output.
func Run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// NewNS creates the named network namespace (visible to `ip netns`) with
// loopback up.
func NewNS(name string) (*netnstest.NS, error) {
	if _, err := Run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := &netnstest.NS{Name: name, Path: "/run/netns/" + name}
	if _, err := Run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

// NSExists reports whether the named namespace exists.
func NSExists(name string) bool {
	_, err := os.Stat("/run/netns/" + name)
	return err == nil
}

// DeleteNS deletes the named namespace; one that is gone is fine.
func DeleteNS(name string) error {
	if !NSExists(name) {
		return nil
	}
	_, err := Run("ip", "netns", "del", name)
	return err
}

// LinkExists reports whether the link exists in this namespace.
func LinkExists(name string) bool {
	_, err := os.Stat("/sys/class/net/" + name)
	return err == nil
}

// DeleteLink deletes a link in this namespace; one that is gone is fine.
func DeleteLink(name string) error {
	if !LinkExists(name) {
		return nil
	}
	_, err := Run("ip", "link", "del", name)
	if err != nil && !LinkExists(name) {
		return nil // its namespace took it (a veth goes with its peer)
	}
	return err
}

// AddBridge creates the underlay bridge with this namespace's address on
// it (cidr, e.g. 10.244.0.1/24) and brings it up.
//
// The bridge is given a MAC address of its own (BridgeMAC) as it is made.
// Left to choose, a Linux bridge takes the lowest MAC address of its ports
// and changes it each time a port with a lower one joins; a cell that
// resolved this namespace's address before then keeps sending to the old
// MAC, now only another port's, and the bridge drops those frames until
// the cell's neighbour entry expires (up to a minute of a cell cut off
// from the control plane).
func AddBridge(name, cidr string) error {
	for _, args := range [][]string{
		{"link", "add", name, "address", BridgeMAC().String(), "type", "bridge"},
		{"addr", "add", cidr, "dev", name},
		{"link", "set", name, "up"},
	} {
		if _, err := Run("ip", args...); err != nil {
			return err
		}
	}
	return nil
}

// BridgeMAC is a random unicast, locally administered MAC address: one no
// vendor's card has and no two bridges share in practice.
func BridgeMAC() net.HardwareAddr {
	mac := make(net.HardwareAddr, 6)
	if _, err := rand.Read(mac); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	mac[0] = mac[0]&^0x01 | 0x02 // unicast, locally administered
	return mac
}

// Attach joins ns to the bridge with a veth pair: outside stays here on
// the bridge, inside goes into ns with cidr and a default route via gateway.
func Attach(bridge string, ns *netnstest.NS, outside, inside, cidr, gateway string) error {
	if _, err := Run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside, "netns", ns.Name); err != nil {
		return err
	}
	if _, err := Run("ip", "link", "set", outside, "master", bridge, "up"); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"addr", "add", cidr, "dev", inside},
		{"link", "set", inside, "up"},
		{"route", "add", "default", "via", gateway},
	} {
		if _, err := Run("ip", append([]string{"netns", "exec", ns.Name, "ip"}, args...)...); err != nil {
			return err
		}
	}
	return nil
}

// HTTP does a request from inside ns (its 127.0.0.1, its routes).
func HTTP(ns *netnstest.NS, method, url, body string) (int, string, error) {
	var code int
	var out []byte
	err := ns.Do(func() error {
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		// The transport dials on goroutines of its own, outside the
		// namespace: hand it a connection made here.
		conn, err := net.DialTimeout("tcp", req.URL.Host, 5*time.Second)
		if err != nil {
			return err
		}
		tr := &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		out, err = io.ReadAll(resp.Body)
		return err
	})
	return code, string(out), err
}

// NetworkInfo is the cell's silk-daemon answer, {"overlay_subnet","mtu"},
// fetched from inside the cell.
func NetworkInfo(ns *netnstest.NS) (map[string]any, error) {
	code, body, err := HTTP(ns, http.MethodGet, "http://127.0.0.1:23954/", "")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("silk-daemon answered %d: %s", code, body)
	}
	var info map[string]any
	return info, json.Unmarshal([]byte(body), &info)
}

// MountsUnder lists the mount points at or below dir in this mount
// namespace, deepest first.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var out []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append([]string{mp}, out...)
		}
	}
	return out, s.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c byte
			if _, err := fmt.Sscanf(s[i+1:i+4], "%03o", &c); err == nil {
				b.WriteByte(c)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Unmount detaches the mount at path.
func Unmount(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	return nil
}
