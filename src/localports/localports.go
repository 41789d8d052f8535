// Package localports hands out TCP ports on this machine for servers a
// test or a tool starts and must tell others about before they bind.
//
// A port from the kernel's ephemeral range (bind to :0, then close) is not
// safe for that: between the close and the server's bind, any outgoing
// connection on the machine — every HTTP client of every test package
// running in parallel, every simulated cell of netman-fleet — may get it as
// its source port, and the server fails with "address already in use".
// Reserve therefore hands out ports below the ephemeral range, which the
// kernel never picks for outgoing connections, and holds a per-port flock
// until release so that processes running in parallel never hand out the
// same one.
package localports

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Low and High bound where Reserve looks: [Low, High).
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
var lockDir = filepath.Join(os.TempDir(), "netman-ports")

// Reserve returns a TCP port that is free on host now, outside the
// ephemeral range, and reserved against every other Reserve (in any
// process) until release or the process's exit.
func Reserve(host string) (port int, release func(), err error) {
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
