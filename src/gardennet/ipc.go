package gardennet

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/netman-release/netman/src/garden"
	"io"
)

// UpInputs is what Garden writes to stdin for `up`. Guardian marshals its
// struct without tags for Pid and Properties, so the keys arrive
// capitalised; Go's case-insensitive decoding takes "Pid" and "pid" alike.
type UpInputs struct {
	Pid        int
	Properties map[string]any
	NetOut     []NetOutRule `json:"netout_rules"`
	NetIn      []NetIn      `json:"netin"`
}

// NetIn is garden.NetIn: HostPort 0 asks for an allocated port.
type NetIn struct {
	HostPort      uint32 `json:"host_port"`
	ContainerPort uint32 `json:"container_port"`
}

// PortMapping is garden.PortMapping. It has no JSON tags upstream, so
// mapped-ports carries "HostPort"/"ContainerPort".
type PortMapping struct {
	HostPort      uint32
	ContainerPort uint32
}

// Garden's netOut types (package garden), re-marshalled into the plugins'
// runtimeConfig.netOutRules exactly as Garden's own types would be.
type (
	NetOutRule  = garden.NetOutRule
	IPRange     = garden.IPRange
	PortRange   = garden.PortRange
	ICMPControl = garden.ICMPControl
)

// UpOutputs is what `up` prints; Garden stores the properties on the
// container and writes dns_servers/search_domains into its resolv.conf
// (falling back to the host's when they are absent).
type UpOutputs struct {
	Properties struct {
		ContainerIP      string `json:"garden.network.container-ip"`
		DeprecatedHostIP string `json:"garden.network.host-ip"`
		MappedPorts      string `json:"garden.network.mapped-ports"`
		Interface        string `json:"garden.network.interface,omitempty"`
		// ContainerIPv6 is the container's first IPv6 address on a
		// dual-stack cell (the property Garden reads since
		// cf-networking-release#343); absent on an IPv4-only cell.
		ContainerIPv6 string `json:"garden.network.container-ipv6,omitempty"`
	} `json:"properties"`
	DNSServers    []string `json:"dns_servers,omitempty"`
	SearchDomains []string `json:"search_domains,omitempty"`
}

// Networker is what the actions drive: Manager, or a stand-in in tests.
type Networker interface {
	Up(ctx context.Context, handle string, in UpInputs) (*UpOutputs, error)
	Down(ctx context.Context, handle string) error
}

// Handle runs one action: `up` decodes stdin and prints the outputs as one
// JSON line; `down` ignores stdin (Garden sends `null`).
func Handle(ctx context.Context, n Networker, action, handle string, stdin io.Reader, stdout io.Writer) error {
	if handle == "" {
		return fmt.Errorf("missing handle")
	}
	switch action {
	case "up":
		var in UpInputs
		if err := json.NewDecoder(stdin).Decode(&in); err != nil {
			return err
		}
		out, err := n.Up(ctx, handle, in)
		if err != nil {
			return err
		}
		return json.NewEncoder(stdout).Encode(out)
	case "down":
		return n.Down(ctx, handle)
	default:
		return fmt.Errorf("unrecognized action: %s", action)
	}
}
