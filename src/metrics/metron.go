package metrics

import (
	"net"
	"strconv"
)

// MetronPort is the port of a metron_address config value. netman's Sender
// always sends to the loopback metron agent, as on every CF VM, so the host
// must be loopback (an IP or "localhost").
func MetronPort(address string) (int, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return 0, err
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return 0, &net.AddrError{Err: "metron agent must be on loopback", Addr: address}
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return 0, &net.AddrError{Err: "invalid port", Addr: address}
	}
	return port, nil
}
