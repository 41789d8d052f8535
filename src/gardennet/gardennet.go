// Package gardennet is garden-external-networker: the program Garden runs
// (its "external networker" plugin) to give a container its network on `up`
// and take it away on `down`. It bind-mounts the container's network
// namespace, allocates host ports for NetIn mappings from a state file,
// runs the CNI chain through libcni with Garden's properties as metadata and
// the port mappings and NetOut rules as runtimeConfig, optionally redirects
// the container's TCP to a sidecar proxy, and prints what Garden records.
//
// Main is the whole command; Manager holds the up/down sequence over small
// interfaces (CNI, mounter, port allocator, proxy redirect) so each part is
// tested on its own.
package gardennet

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/containernetworking/cni/libcni"

	"github.com/netman-release/netman/src/iptables"
)

// DefaultLogPrefix prefixes errors until the config names its own.
const DefaultLogPrefix = "cfnetworking"

// usage is upstream's answer to being run by hand (two spaces included).
const usage = "this is a plugin for Garden-runC.  Don't run it directly."

// Main runs the command with args (args[0] is the program name) and
// returns the exit code. Errors go to stderr as one line,
// "<log_prefix>: <error>".
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cfg, err := run(ctx, args, stdin, stdout, stderr)
	if err != nil {
		prefix := DefaultLogPrefix
		if cfg != nil && cfg.LogPrefix != "" {
			prefix = cfg.LogPrefix
		}
		fmt.Fprintf(stderr, "%s: %s\n", prefix, err)
		return 1
	}
	return 0
}

// Args are the parsed command line.
type Args struct {
	Action, Handle, ConfigFile string
}

// ParseArgs parses and checks the flags in upstream's order: configFile,
// then the config itself, then extra arguments, handle and action. The
// config is returned whenever it loaded, so its log_prefix can label a
// later error.
func ParseArgs(args []string, stderr io.Writer) (Args, *Config, error) {
	var a Args
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&a.Action, "action", "", "")
	fs.StringVar(&a.Handle, "handle", "", "")
	fs.StringVar(&a.ConfigFile, "configFile", "", "")
	if err := fs.Parse(args[1:]); err != nil {
		return a, nil, err
	}
	if a.ConfigFile == "" {
		return a, nil, errors.New("missing required flag 'configFile'")
	}
	cfg, err := LoadConfig(a.ConfigFile)
	if err != nil {
		return a, cfg, err
	}
	switch {
	case fs.NArg() > 0:
		return a, cfg, fmt.Errorf("unexpected extra args: %+v", fs.Args())
	case a.Handle == "":
		return a, cfg, errors.New("missing required flag 'handle'")
	case a.Action == "":
		return a, cfg, errors.New("missing required flag 'action'")
	}
	return a, cfg, nil
}

func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (*Config, error) {
	if len(args) < 2 || args[1] == "-h" || args[1] == "--help" {
		//lint:ignore ST1005 upstream's words, full stops included
		return nil, errors.New(usage)
	}
	a, cfg, err := ParseArgs(args, stderr)
	if err != nil {
		return cfg, fmt.Errorf("parse args: %w", err)
	}
	list, err := LoadNetworkConfig(cfg.CniConfigDir, stderr)
	if err != nil {
		return cfg, fmt.Errorf("load cni config: %w", err)
	}
	return cfg, Handle(ctx, NewManager(cfg, list, stderr), a.Action, a.Handle, stdin, stdout)
}

// NewManager wires the real parts for cfg.
func NewManager(cfg *Config, list *libcni.NetworkConfigList, stderr io.Writer) *Manager {
	return &Manager{
		CNI:     &CNI{Lib: NewCNILibrary(cfg.CniPluginDir, cfg.CNICacheDir), List: list},
		Mounter: BindMounter{},
		Ports: &PortAllocator{
			StateFile: cfg.StateFilePath,
			Range:     Range{Start: cfg.StartPort, Size: cfg.TotalPorts},
		},
		Proxy: &ProxyRedirect{
			IPTables:  iptables.New(iptables.Config{LockFile: cfg.IPTablesLockFile}),
			CIDR:      cfg.ProxyRedirectCIDR,
			ProxyPort: cfg.ProxyPort,
			Ingress:   cfg.EnableIngressProxyRedirect,
		},
		BindMountRoot: cfg.BindMountDir,
		SearchDomains: cfg.SearchDomains,
		Stderr:        stderr,
	}
}
