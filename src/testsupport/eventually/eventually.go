// Package eventually polls a condition in a test until it holds or time
// runs out.
package eventually

import (
	"testing"
	"time"
)

// interval is short enough not to slow a test, long enough not to spin.
const interval = 5 * time.Millisecond

// True fails the test when cond has not held within the given time; what
// names the awaited state in the failure.
func True(tb testing.TB, what string, within time.Duration, cond func() bool) {
	tb.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(interval) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", within, what)
			return
		}
	}
}
