// Package ports hands tests free TCP ports.
package ports

import (
	"net"
	"testing"
)

// Free returns a TCP port that was free on host a moment ago.
func Free(tb testing.TB, host string) int {
	tb.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		tb.Fatalf("finding a free port on %s: %v", host, err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
