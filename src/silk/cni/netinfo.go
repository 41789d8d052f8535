package cni

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"

	"github.com/netman-release/netman/src/jsonhttp"
	"github.com/netman-release/netman/src/silk/overlay6"
)

// NetworkInfo is silk-daemon's answer on 127.0.0.1:<daemonPort>:
// the cell's lease and the VTEP MTU (upstream's fields) and, from a
// dual-stack daemon, the deployment's IPv6 overlay network.
type NetworkInfo struct {
	OverlaySubnet      string `json:"overlay_subnet"`
	MTU                int    `json:"mtu"`
	IPv6OverlayNetwork string `json:"ipv6_overlay_network,omitempty"`
}

// IPv6 is the IPv6 overlay network, the zero Network on an IPv4-only
// cell; only meaningful after discover validated it.
func (i NetworkInfo) IPv6() overlay6.Network {
	n, _ := overlay6.ParseConfig(i.IPv6OverlayNetwork)
	return n
}

// DefaultDaemonTimeout bounds the whole network-info request. The daemon
// answers from memory, so anything slower means it is wedged; failing fast
// lets the container runtime retry instead of hanging a container create.
const DefaultDaemonTimeout = 5 * time.Second

var (
	flannelSubnet = regexp.MustCompile(`FLANNEL_SUBNET=((?:[0-9]{1,3}\.){3}[0-9]{1,3}/[0-9]{1,2})`)
	flannelMTU    = regexp.MustCompile(`FLANNEL_MTU=([0-9]{1,5})`)
)

// discover returns the subnet to allocate from and the MTU for the veth,
// from the subnet file or the daemon; a non-zero netconf mtu overrides.
func (p *Plugin) discover(ctx context.Context, conf *NetConf) (NetworkInfo, error) {
	var info NetworkInfo
	var err error
	if conf.SubnetFile != "" {
		info, err = readSubnetFile(conf.SubnetFile)
	} else {
		info, err = p.fetchNetworkInfo(ctx, conf.DaemonPort)
	}
	if err != nil {
		return NetworkInfo{}, err
	}
	if conf.MTU != 0 {
		info.MTU = conf.MTU
	}
	if info.MTU < 68 || info.MTU > 65535 {
		return NetworkInfo{}, fmt.Errorf("invalid mtu %d: must be between 68 and 65535", info.MTU)
	}
	ip, _, err := net.ParseCIDR(info.OverlaySubnet)
	if err != nil || ip.To4() == nil {
		return NetworkInfo{}, fmt.Errorf("invalid overlay subnet %q: must be an IPv4 CIDR", info.OverlaySubnet)
	}
	if _, err := overlay6.ParseConfig(info.IPv6OverlayNetwork); err != nil {
		return NetworkInfo{}, fmt.Errorf("%s: %w", overlay6.ConfigKey, err)
	}
	return info, nil
}

func (p *Plugin) daemonURL(port int) string {
	host := p.DaemonHost
	if host == "" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/"
}

// fetchNetworkInfo asks silk-daemon. Dialling happens on the calling
// goroutine's thread, i.e. in the plugin's own namespace (the host's).
func (p *Plugin) fetchNetworkInfo(ctx context.Context, port int) (NetworkInfo, error) {
	timeout := p.DaemonTimeout
	if timeout <= 0 {
		timeout = DefaultDaemonTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := p.HTTPClient
	if client == nil {
		client = defaultClient
	}
	api := jsonhttp.Client{HTTP: client, Words: daemonWords}
	var info NetworkInfo
	_, err := api.Do(ctx, jsonhttp.Request{Path: p.daemonURL(port)}, &info)
	return info, err
}

// daemonWords name the daemon's URL in every failure.
var daemonWords = jsonhttp.Words{
	Send: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("silk-daemon not reachable at %s (is it running?): %w", c.URL, err)
	},
	Read: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("reading silk-daemon response from %s: %w", c.URL, err)
	},
	Decode: func(c jsonhttp.Call, err error) error {
		return fmt.Errorf("decoding silk-daemon response from %s: %w", c.URL, err)
	},
	Status: func(c jsonhttp.Call, se *jsonhttp.StatusError) error {
		return se.Reword("silk-daemon at %s answered %d: %s", c.URL, se.Code, se.Body)
	},
}

// defaultClient never uses a proxy and keeps no idle connections: the
// plugin makes one request per process.
var defaultClient = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}

// readSubnetFile parses a flannel subnet.env (FLANNEL_SUBNET, FLANNEL_MTU).
func readSubnetFile(path string) (NetworkInfo, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return NetworkInfo{}, err
	}
	subnet := flannelSubnet.FindSubmatch(data)
	if subnet == nil {
		return NetworkInfo{}, fmt.Errorf("unable to parse flannel subnet file")
	}
	mtu := flannelMTU.FindSubmatch(data)
	if mtu == nil {
		return NetworkInfo{}, fmt.Errorf("unable to parse MTU from subnet file")
	}
	n, err := strconv.Atoi(string(mtu[1]))
	if err != nil {
		return NetworkInfo{}, err
	}
	return NetworkInfo{OverlaySubnet: string(subnet[1]), MTU: n}, nil
}
