package netlinkx

import (
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/netman-release/netman/src/testsupport/netnstest"
)

func TestRetry(t *testing.T) {
	other := errors.New("permission denied")
	tests := []struct {
		name      string
		errs      []error // what each call returns; the last repeats
		wantCalls int
		wantErr   error
	}{
		{name: "complete at once", errs: []error{nil}, wantCalls: 1},
		{name: "interrupted once", errs: []error{netlink.ErrDumpInterrupted, nil}, wantCalls: 2},
		{name: "bare EINTR", errs: []error{syscall.EINTR, syscall.EINTR, nil}, wantCalls: 3},
		{name: "wrapped interruption", errs: []error{fmt.Errorf("dump: %w", netlink.ErrDumpInterrupted), nil}, wantCalls: 2},
		{name: "other error is final", errs: []error{other}, wantCalls: 1, wantErr: other},
		{name: "always interrupted", errs: []error{netlink.ErrDumpInterrupted}, wantCalls: Attempts, wantErr: netlink.ErrDumpInterrupted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			err := Retry(func() error {
				calls++
				return tc.errs[min(calls, len(tc.errs))-1]
			})
			if calls != tc.wantCalls {
				t.Errorf("calls = %d, want %d", calls, tc.wantCalls)
			}
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestInterruptedMatchesEINTR(t *testing.T) {
	if !Interrupted(netlink.ErrDumpInterrupted) || !Interrupted(syscall.EINTR) {
		t.Error("ErrDumpInterrupted and EINTR must both count as interrupted")
	}
	if Interrupted(nil) || Interrupted(syscall.ENOENT) {
		t.Error("nil and ENOENT are not interruptions")
	}
}

// fakeLinks is a kernel whose link dump is interrupted a given number of
// times, each interrupted dump returning a partial list.
type fakeLinks struct {
	interrupts int
	calls      int
	links      []netlink.Link
}

func (f *fakeLinks) LinkList() ([]netlink.Link, error) {
	f.calls++
	if f.calls <= f.interrupts {
		return f.links[:1], netlink.ErrDumpInterrupted
	}
	return f.links, nil
}

func TestLinkListRetriesInterruptedDumps(t *testing.T) {
	links := []netlink.Link{
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo"}},
		&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}},
	}
	f := &fakeLinks{interrupts: 2, links: links}
	got, err := LinkList(f)
	if err != nil || len(got) != 2 || f.calls != 3 {
		t.Fatalf("LinkList = %d links, %v after %d calls; want the complete 2 after 3", len(got), err, f.calls)
	}

	// A kernel that never completes: the last, partial list is returned with
	// the error, as netlink does.
	f = &fakeLinks{interrupts: Attempts, links: links}
	got, err = LinkList(f)
	if !errors.Is(err, netlink.ErrDumpInterrupted) || len(got) != 1 || f.calls != Attempts {
		t.Fatalf("LinkList = %d links, %v after %d calls; want the partial 1 with ErrDumpInterrupted after %d", len(got), err, f.calls, Attempts)
	}
}

// TestHostPrivileged dumps a fresh namespace through Host: its links, a veth's
// address, no neighbours and the local route once it is up.
func TestHostPrivileged(t *testing.T) {
	netnstest.RequireRoot(t)
	ns := netnstest.New(t, "nlx")
	ns.Run(t, "ip", "link", "set", "lo", "up")
	ns.Run(t, "ip", "link", "add", "nlx0", "type", "veth", "peer", "name", "nlx1")
	ns.Run(t, "ip", "addr", "add", "10.9.8.7/24", "dev", "nlx0")
	ns.Run(t, "ip", "link", "set", "nlx0", "up")
	ns.Run(t, "ip", "link", "set", "nlx1", "up")
	err := ns.Do(func() error {
		links, err := LinkList(Host)
		if err != nil {
			return err
		}
		var veth netlink.Link
		for _, l := range links {
			if l.Attrs().Name == "nlx0" {
				veth = l
			}
		}
		if len(links) != 3 || veth == nil {
			return fmt.Errorf("links = %d (nlx0 found: %t), want lo, nlx0 and nlx1", len(links), veth != nil)
		}
		addrs, err := AddrList(Host, veth, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(addrs) != 1 || !addrs[0].IP.Equal(net.IPv4(10, 9, 8, 7)) {
			return fmt.Errorf("addresses of nlx0 = %v, want 10.9.8.7", addrs)
		}
		neighs, err := NeighList(Host, veth.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		if len(neighs) != 0 {
			return fmt.Errorf("neighbours of nlx0 = %v, want none", neighs)
		}
		routes, err := RouteListFiltered(Host, netlink.FAMILY_V4, &netlink.Route{LinkIndex: veth.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			return err
		}
		if len(routes) != 1 || routes[0].Dst.String() != "10.9.8.0/24" {
			return fmt.Errorf("routes on nlx0 = %v, want the connected 10.9.8.0/24", routes)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
