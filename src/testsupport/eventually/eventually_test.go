package eventually

import (
	"fmt"
	"testing"
	"time"
)

type recorder struct {
	testing.TB
	failure string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failure = fmt.Sprintf(format, args...)
}

func TestTrue(t *testing.T) {
	n := 0
	True(t, "the third poll", time.Second, func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("polled %d times, want 3", n)
	}
	r := &recorder{TB: t}
	True(r, "never", 20*time.Millisecond, func() bool { return false })
	if r.failure != "timed out after 20ms waiting for never" {
		t.Errorf("failure = %q", r.failure)
	}
}
