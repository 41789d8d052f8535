package metrics

import (
	"fmt"
	"net"
	"strconv"

	"code.cloudfoundry.org/lager/v3"
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

// NewSenderAt is NewSender for the daemons configured with a metron_address
// ("127.0.0.1:3457") rather than a metron_port.
func NewSenderAt(logger lager.Logger, origin, metronAddress string) (*Sender, error) {
	port, err := MetronPort(metronAddress)
	if err != nil {
		return nil, fmt.Errorf("metron_address: %w", err)
	}
	return NewSender(logger, origin, port)
}
