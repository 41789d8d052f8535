// Package namespace handles named network namespaces (those `ip netns`
// lists, under /run/netns) for the lab and the privileged test harness:
// creating and deleting them, running commands and Go code inside them,
// joining them with veth pairs and to an underlay bridge, and knowing when
// a process started through `ip netns exec` is really inside one.
//
// Everything here returns errors; src/testsupport/netnstest wraps it for
// tests (cleanup when the test ends, failing the test on an error).
package namespace

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vishvananda/netns"
)

// Dir is where `ip netns` keeps the namespaces it names.
const Dir = "/run/netns"

// NS is a named network namespace.
type NS struct {
	Name string
	Path string // Dir/<Name>
}

// Named is the namespace called name, which may or may not exist.
func Named(name string) *NS { return &NS{Name: name, Path: filepath.Join(Dir, name)} }

// UniqueName returns prefix plus a short random suffix; kernel names are
// capped at 15 bytes, so keep prefixes short.
func UniqueName(prefix string) string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return prefix + hex.EncodeToString(b)
}

// Add creates the named namespace with loopback up. When only bringing
// loopback up fails, the namespace is returned with the error: it exists
// and is the caller's to delete.
func Add(name string) (*NS, error) {
	if _, err := Run("ip", "netns", "add", name); err != nil {
		return nil, err
	}
	ns := Named(name)
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		return ns, err
	}
	return ns, nil
}

// Exists reports whether the named namespace exists.
func Exists(name string) bool {
	_, err := os.Stat(filepath.Join(Dir, name))
	return err == nil
}

// Delete deletes the named namespace; one that is gone is fine.
func Delete(name string) error {
	if !Exists(name) {
		return nil
	}
	_, err := Run("ip", "netns", "del", name)
	return err
}

// Run runs a command in the caller's namespace; a failure carries its
// output.
func Run(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// Run runs a command inside the namespace (through `ip netns exec`).
func (ns *NS) Run(name string, args ...string) (string, error) {
	return Run("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Command returns an unstarted command that runs inside the namespace.
// `ip netns exec` execs name, so the process's PID is name's; but it forks
// before it joins the namespace: see Holds.
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Holds returns nil when the process pid is inside the namespace. A
// process started through Command may still be in its starter's namespace
// for a moment, and one that hands its PID on (a container's init, given
// to the CNI chain) must not be handed on before this says so.
func (ns *NS) Holds(pid int) error {
	got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		return err
	}
	want, err := os.Stat(ns.Path)
	if err != nil {
		return err
	}
	if !os.SameFile(got, want) {
		return fmt.Errorf("pid %d is not in namespace %s yet", pid, ns.Name)
	}
	return nil
}

// AwaitPID waits until Holds(pid) or timeout passes.
func (ns *NS) AwaitPID(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ns.Holds(pid)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not enter namespace %s within %v (last: %w)", pid, ns.Name, timeout, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Do runs fn on a locked OS thread switched into the namespace, then
// switches back. Goroutines fn starts do not inherit the namespace, but a
// socket or a child process made in fn keeps it.
func (ns *NS) Do(fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("getting current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return fmt.Errorf("opening netns %s: %w", ns.Path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("entering netns %s: %w", ns.Name, err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			// The thread is in the wrong namespace; never reuse it.
			panic(fmt.Sprintf("restoring netns: %v", err))
		}
	}()
	return fn()
}

// Handle opens the namespace for netlink handles (netlink.NewHandleAt);
// the caller closes it.
func (ns *NS) Handle() (netns.NsHandle, error) {
	h, err := netns.GetFromPath(ns.Path)
	if err != nil {
		return h, fmt.Errorf("opening netns %s: %w", ns.Path, err)
	}
	return h, nil
}

// HTTP does a request from inside the namespace (its 127.0.0.1, its
// routes) and returns the status and body.
func (ns *NS) HTTP(method, url, body string) (int, string, error) {
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
