package gardennet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"

	"github.com/containernetworking/cni/pkg/types"
	types040 "github.com/containernetworking/cni/pkg/types/040"
)

// cniRunner runs the CNI chain for one container.
type cniRunner interface {
	Up(ctx context.Context, nsPath, handle string, metadata, runtimeConfig map[string]any) (types.Result, error)
	Down(ctx context.Context, nsPath, handle string) error
}

// mounter keeps a container's network namespace alive at a path.
type mounter interface {
	Mount(source, target string) error
	Unmount(target string) error
}

// portAllocator hands out host ports for a handle.
type portAllocator interface {
	Acquire(ctx context.Context, handle string, n int) ([]uint32, error)
	ReleaseAll(ctx context.Context, handle string) error
}

// proxyRedirector installs the sidecar-proxy rules inside a container.
type proxyRedirector interface {
	Apply(ctx context.Context, nsPath string) error
}

// Manager implements up and down (spec §1.3, §1.7).
type Manager struct {
	CNI           cniRunner
	Mounter       mounter
	Ports         portAllocator
	Proxy         proxyRedirector
	BindMountRoot string
	SearchDomains []string
	// Stderr receives the problems down reports without failing.
	Stderr io.Writer
}

// HostIP is the deprecated garden.network.host-ip, always this literal.
const HostIP = "255.255.255.255"

// Up bind-mounts the container's namespace, allocates host ports, runs CNI
// ADD and applies the proxy redirect, in upstream's order. On failure what
// was done is left for Down, which Garden runs when create fails.
func (m *Manager) Up(ctx context.Context, handle string, in UpInputs) (*UpOutputs, error) {
	if handle == "" {
		return nil, errors.New("up missing container handle")
	}
	source := "/proc/" + strconv.Itoa(in.Pid) + "/ns/net"
	if in.Pid == 0 {
		// Garden passes the namespace as an inherited descriptor instead.
		source = "/proc/self/fd/3"
	}
	nsPath := filepath.Join(m.BindMountRoot, handle)
	if err := m.Mounter.Mount(source, nsPath); err != nil {
		return nil, fmt.Errorf("failed mounting %s to %s: %w", source, nsPath, err)
	}

	// Every port is taken under one hold of the state file's lock.
	want := 0
	for _, p := range in.NetIn {
		if p.HostPort == 0 {
			want++
		}
	}
	if want > 0 {
		got, err := m.Ports.Acquire(ctx, handle, want)
		if err != nil {
			return nil, fmt.Errorf("allocating port: %w", err)
		}
		for i := range in.NetIn {
			if in.NetIn[i].HostPort == 0 {
				in.NetIn[i].HostPort, got = got[0], got[1:]
			}
		}
	}
	mapped := make([]PortMapping, 0, len(in.NetIn))
	for _, p := range in.NetIn {
		mapped = append(mapped, PortMapping(p))
	}

	result, err := m.CNI.Up(ctx, nsPath, handle, in.Properties, map[string]any{
		"portMappings": in.NetIn,
		"netOutRules":  in.NetOut,
	})
	if err != nil {
		return nil, fmt.Errorf("cni up failed: %w", err)
	}
	if result == nil {
		return nil, errors.New("cni up failed: no ip allocated")
	}
	converted, err := result.GetAsVersion("0.4.0")
	if err != nil {
		return nil, fmt.Errorf("cni plugin result version incompatible: %w", err)
	}
	if err := m.Proxy.Apply(ctx, nsPath); err != nil {
		return nil, fmt.Errorf("proxy redirect apply: %w", err)
	}
	return outputs(converted.(*types040.Result), mapped, m.SearchDomains)
}

// outputs maps a CNI 0.4.0 result to what Garden reads.
func outputs(r *types040.Result, mapped []PortMapping, searchDomains []string) (*UpOutputs, error) {
	var ip, ip6 *types040.IPConfig
	for _, c := range r.IPs {
		if c.Version == "4" && ip == nil {
			ip = c
		}
		if c.Version == "6" && ip6 == nil {
			ip6 = c
		}
	}
	if ip == nil {
		return nil, errors.New("expected an IPv4 address in the CNI result")
	}
	// Results older than 0.3.0 carry no interface index.
	iface := ""
	if ip.Interface != nil {
		if n := len(r.Interfaces); *ip.Interface >= n || *ip.Interface < 0 {
			return nil, fmt.Errorf("no corresponding interface found, interface index: %d, number of interfaces: %d", *ip.Interface, n)
		}
		iface = r.Interfaces[*ip.Interface].Name
	}
	ports, err := json.Marshal(mapped)
	if err != nil {
		return nil, err
	}
	out := &UpOutputs{DNSServers: r.DNS.Nameservers, SearchDomains: searchDomains}
	out.Properties.ContainerIP = ip.Address.IP.String()
	out.Properties.DeprecatedHostIP = HostIP
	out.Properties.MappedPorts = string(ports)
	out.Properties.Interface = iface
	if ip6 != nil {
		out.Properties.ContainerIPv6 = ip6.Address.IP.String()
	}
	return out, nil
}

// Down runs CNI DEL, then removes the bind mount and releases the ports.
// Only a DEL failure fails it (Garden retries destroy); the rest is
// reported on Stderr. Repeating it is harmless.
func (m *Manager) Down(ctx context.Context, handle string) error {
	if handle == "" {
		return errors.New("down missing container handle")
	}
	nsPath := filepath.Join(m.BindMountRoot, handle)
	if err := m.CNI.Down(ctx, nsPath, handle); err != nil {
		return fmt.Errorf("cni down: %w", err)
	}
	if err := m.Mounter.Unmount(nsPath); err != nil {
		fmt.Fprintf(m.Stderr, "removing bind mount %s: %s\n", nsPath, err)
	}
	if err := m.Ports.ReleaseAll(ctx, handle); err != nil {
		fmt.Fprintf(m.Stderr, "releasing ports: %s\n", err)
	}
	return nil
}
