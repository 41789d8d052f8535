package iptableslogger

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/netman-release/netman/src/testsupport/eventually"
)

func TestParseKmsg(t *testing.T) {
	for _, tc := range []struct {
		name string
		rec  string
		want Kmsg
		ok   bool
	}{
		{"LOG rule line", "4,344,1062372755,-;OK_0005_x IN= OUT=s-a SRC=10.255.77.1 DST=10.255.77.2 MARK=0x5 \n",
			Kmsg{Seq: 344, Kernel: true, Message: []byte("OK_0005_x IN= OUT=s-a SRC=10.255.77.1 DST=10.255.77.2 MARK=0x5 ")}, true},
		{"dictionary lines are dropped", "6,12,99,-;eth0: link up\n SUBSYSTEM=net\n DEVICE=n2\n",
			Kmsg{Seq: 12, Kernel: true, Message: []byte("eth0: link up")}, true},
		{"caller id and continuation flag", "7,13,100,c,caller=T42;DENY_x\n",
			Kmsg{Seq: 13, Kernel: true, Message: []byte("DENY_x")}, true},
		{"userspace (facility user) is not kernel", "12,14,101,-;OK_ forged SRC=1.1.1.1 DST=2.2.2.2\n",
			Kmsg{Seq: 14, Message: []byte("OK_ forged SRC=1.1.1.1 DST=2.2.2.2")}, true},
		{"no newline", "0,1,2,-;x", Kmsg{Seq: 1, Kernel: true, Message: []byte("x")}, true},
		{"no header", "OK_ SRC=1.1.1.1", Kmsg{}, false},
		{"bad priority", "x,1,2,-;m", Kmsg{}, false},
		{"no sequence", "6;m", Kmsg{}, false},
		{"bad sequence", "6,1a,2,-;m", Kmsg{}, false},
		{"sequence too long", "6,12345678901234567890,2,-;m", Kmsg{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := ParseKmsg([]byte(tc.rec))
			if ok != tc.ok {
				t.Fatalf("ok = %v", ok)
			}
			if diff := cmp.Diff(tc.want, got); ok && diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// fakeKmsg stands in for /dev/kmsg: a SOCK_SEQPACKET pair keeps record
// boundaries (one record per read) and is pollable, as the device is.
func fakeKmsg(t *testing.T) (*kmsgTailer, func(rec string)) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	writer := os.NewFile(uintptr(fds[1]), "kmsg-writer")
	t.Cleanup(func() { writer.Close() })
	tl, err := newKmsgTailer(os.NewFile(uintptr(fds[0]), "fake-kmsg"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl, func(rec string) {
		t.Helper()
		if _, err := writer.Write([]byte(rec)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestKmsgTailer(t *testing.T) {
	tl, send := fakeKmsg(t)
	if tl.Kind() != "kmsg" {
		t.Fatalf("kind = %q", tl.Kind())
	}
	// Records with sequence 10..; 13 is overwritten in the ring buffer
	// (read fails with EPIPE), then 14 is gone too.
	var failNext atomic.Bool
	tl.read = func(fd int, p []byte) (int, error) {
		if failNext.CompareAndSwap(true, false) {
			return 0, syscall.EPIPE
		}
		return unix.Read(fd, p)
	}
	r := &recorder{}
	stop := runTailer(t, tl, r)

	send("4,10,1,-;OK_a SRC=10.255.0.1 DST=10.255.0.2\n")
	send("12,11,2,-;OK_forged by userspace\n")
	send("4,12,2,-;OK_sync\n")
	// OK_sync is read after the forged record: everything sent is consumed
	// before the read below fails (waiting for a flush was not enough: one
	// can come between the first two records, and the EPIPE then hit the
	// forged record's read, counting one record more as lost).
	waitLines(t, r, "OK_a SRC=10.255.0.1 DST=10.255.0.2", "OK_sync")
	eventually.True(t, "a flush once caught up", 10*time.Second, func() bool { _, _, f := r.snapshot(); return f > 0 })

	failNext.Store(true)
	send("4,15,3,-;DENY_b\n SUBSYSTEM=net\n")
	waitLines(t, r, "OK_a SRC=10.255.0.1 DST=10.255.0.2", "OK_sync", "DENY_b")
	if _, lost, _ := r.snapshot(); lost != 2 {
		t.Errorf("lost = %d, want 2 (sequence 13, 14)", lost)
	}
	send("garbage\n")
	eventually.True(t, "the malformed record counted", 10*time.Second, func() bool { _, lost, _ := r.snapshot(); return lost == 3 })

	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	// A later Run goes on reading.
	send("4,16,4,-;OK_c\n")
	runTailer(t, tl, r)
	waitLines(t, r, "OK_a SRC=10.255.0.1 DST=10.255.0.2", "OK_sync", "DENY_b", "OK_c")
}

func TestKmsgTailerReadError(t *testing.T) {
	tl, send := fakeKmsg(t)
	tl.read = func(int, []byte) (int, error) { return 0, syscall.EIO }
	r := &recorder{}
	done := make(chan error, 1)
	go func() { done <- tl.Run(t.Context(), r) }()
	send("4,1,1,-;x\n")
	if err := <-done; err == nil || !errors.Is(err, syscall.EIO) {
		t.Errorf("Run = %v, want EIO", err)
	}
}
