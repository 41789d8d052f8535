package localports

import (
	"net"
	"strconv"
	"testing"
)

// TestFreeIsOutsideTheEphemeralRange: a port the kernel may hand to any
// outgoing connection is not free for a daemon to bind later.
func TestFreeIsOutsideTheEphemeralRange(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := free(t)
		if p < Low || p >= High {
			t.Fatalf("port %d outside [%d, %d)", p, Low, High)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free: %v", p, err)
		}
		l.Close()
	}
	// An outgoing connection's source port never lands in the range.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for range 20 {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if p := c.LocalAddr().(*net.TCPAddr).Port; p >= Low && p < High {
			t.Errorf("outgoing connection got source port %d inside [%d, %d)", p, Low, High)
		}
		c.Close()
	}
}

// TestReservedPortIsNotHandedOutAgain: a second reservation (as a parallel
// test process would make) skips a port whose lock is held, even though
// nothing listens on it.
func TestReservedPortIsNotHandedOutAgain(t *testing.T) {
	p1, release, err := Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	low, high := Low, High
	t.Cleanup(func() { Low, High = low, high })
	Low, High = p1, p1+1
	if p2, r2, err := Reserve("127.0.0.1"); err == nil {
		r2()
		t.Fatalf("port %d reserved twice (got %d)", p1, p2)
	}
	release()
	p3, r3, err := Reserve("127.0.0.1")
	if err != nil || p3 != p1 {
		t.Fatalf("after release: %d, %v; want %d", p3, err, p1)
	}
	r3()
}

func free(t *testing.T) int {
	p, release, err := Reserve("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(release)
	return p
}
