// Package ports hands tests free TCP ports.
//
// A port from the kernel's ephemeral range (bind to :0, then close) is not
// safe to hand a daemon: between the close and the daemon's bind, any
// outgoing connection on the machine — every HTTP client of every test
// package running in parallel — may get it as its source port, and the
// daemon fails with "address already in use". Free therefore hands out
// ports below the ephemeral range, which the kernel never picks for
// outgoing connections, and holds a per-port flock for the rest of the test
// so that test processes running in parallel never hand out the same one.
package ports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Range is where Free looks: [Low, High).
var Low, High = lowHigh()

// lowHigh picks the 10,000 ports below the ephemeral range (or above it
// when it starts too low).
func lowHigh() (int, int) {
	start, end := 32768, 60999
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if s, err1 := strconv.Atoi(f[0]); err1 == nil {
				if e, err2 := strconv.Atoi(f[1]); err2 == nil {
					start, end = s, e
				}
			}
		}
	}
	if start > 11024 {
		return start - 10000, start
	}
	return end + 1, 65536
}

// lockDir holds the per-port lock files shared by every test process.
var lockDir = filepath.Join(os.TempDir(), "netman-test-ports")

// Free returns a TCP port that is free on host, outside the ephemeral
// range, and reserved for tb until its cleanup.
func Free(tb testing.TB, host string) int {
	tb.Helper()
	port, release, err := reserve(host)
	if err != nil {
		tb.Fatalf("finding a free port on %s: %v", host, err)
	}
	tb.Cleanup(release)
	return port
}

func reserve(host string) (int, func(), error) {
	if err := os.MkdirAll(lockDir, 0o777); err != nil {
		return 0, nil, err
	}
	n := High - Low
	first := rand.IntN(n)
	for i := range n {
		port := Low + (first+i)%n
		f, err := os.OpenFile(filepath.Join(lockDir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return 0, nil, err
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) != nil {
			f.Close() // another test process holds it
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			f.Close() // in use by something else: closing drops the lock
			continue
		}
		l.Close()
		return port, func() { f.Close() }, nil
	}
	return 0, nil, fmt.Errorf("no free port in %d-%d", Low, High-1)
}
